package onboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/apiclient"
	"github.com/samdrift/samdrift/internal/audit"
)

// OffboardOptions describe an offboarding.
type OffboardOptions struct {
	File, ID string
	// ExportDir receives the agency's data before it is deleted.
	ExportDir string
	// API reaches the running Samdrift with an admin credential.
	API     *apiclient.Client
	NATSDir string
	// Timeout bounds the wait for the running Samdrift to stop the
	// agency's intake.
	Timeout  time.Duration
	Audit    *audit.Log
	Who      string
	Progress io.Writer
}

// Offboard stops the agency's intake (phase plan), exports its data to a
// directory, deletes it from the store and the bus, and removes its
// catalogue entry and NATS account; it returns the export's directory. Each
// step can be run again after a failure: the data is deleted only once its
// export is complete.
func Offboard(ctx context.Context, o OffboardOptions) (string, error) {
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	cat, err := catalogue.LoadFile(o.File)
	if err != nil {
		return "", err
	}
	a := cat.Agency(o.ID)
	if a == nil {
		return "", fmt.Errorf("no agency %q in %s", o.ID, o.File)
	}
	var info struct {
		InCatalogue bool   `json:"in_catalogue"`
		Phase       string `json:"phase"`
	}
	infoPath := "/api/v1/admin/agencies/" + url.PathEscape(o.ID)
	// Reach the running Samdrift before changing anything.
	if err := o.API.Get(ctx, infoPath, &info); err != nil {
		return "", fmt.Errorf("%w\nNothing was changed", err)
	}
	if err := os.MkdirAll(o.ExportDir, 0o750); err != nil {
		return "", fmt.Errorf("%w\nNothing was changed", err)
	}

	say("1/4 Stopping intake: phase %s → plan", a.Phase)
	if a.Phase != catalogue.PhasePlan {
		_, old, err := catalogue.SetPhase(o.File, o.ID, catalogue.PhasePlan)
		if err != nil {
			return "", err
		}
		_ = o.Audit.Write(audit.Entry{Who: o.Who, Action: "agency_phase", Agency: o.ID, Detail: map[string]any{"from": old, "to": "plan", "reason": "offboarding"}})
	}
	deadline := time.Now().Add(o.Timeout)
	for info.Phase != string(catalogue.PhasePlan) {
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s still has %s in phase %q after %s; is it running on %s?", o.API.Base, o.ID, info.Phase, o.Timeout, o.File)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if err := o.API.Get(ctx, infoPath, &info); err != nil {
			return "", err
		}
	}

	say("2/4 Exporting TSDB snapshot and incidents to %s", o.ExportDir)
	dest, files, err := exportAgency(ctx, o.API, o.ID, o.ExportDir)
	if err != nil {
		return "", fmt.Errorf("export: %w\nThe agency is in phase plan and its data is intact; run offboard again to retry", err)
	}
	say("    %s (%d files)", dest, files)
	_ = o.Audit.Write(audit.Entry{Who: o.Who, Action: "agency_exported", Agency: o.ID, Detail: map[string]any{"dir": dest, "files": files}})

	say("3/4 Deleting the agency's data from the store")
	resp, err := o.API.Do(ctx, http.MethodDelete, infoPath+"/data", nil)
	if err != nil {
		return dest, fmt.Errorf("delete: %w\nThe export in %s is complete; run offboard again to retry", err, dest)
	}
	resp.Body.Close()

	say("4/4 Removing the agency from the catalogue and NATS accounts")
	if _, err := catalogue.RemoveAgency(o.File, o.ID); err != nil {
		return dest, err
	}
	natsDir := o.NATSDir
	if natsDir == "" {
		natsDir = filepath.Join(filepath.Dir(o.File), "nats-accounts")
	}
	if err := bus.RemoveAgencyAccount(natsDir, o.ID); err != nil {
		say("warning: NATS account: %v", err)
	}
	_ = o.Audit.Write(audit.Entry{Who: o.Who, Action: "agency_offboarded", Agency: o.ID, Detail: map[string]any{"export": dest}})
	return dest, nil
}

// exportAgency downloads the agency's export and unpacks it into
// <dir>/samdrift-<id>-<time>/, keeping the archive beside it.
func exportAgency(ctx context.Context, api *apiclient.Client, id, dir string) (string, int, error) {
	resp, err := api.Do(ctx, http.MethodGet, "/api/v1/admin/agencies/"+url.PathEscape(id)+"/export", nil)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	base := fmt.Sprintf("samdrift-%s-%s", id, time.Now().UTC().Format("20060102T150405Z"))
	archive := filepath.Join(dir, base+".tar.gz")
	f, err := os.OpenFile(archive, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return "", 0, err
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	dest := filepath.Join(dir, base)
	af, err := os.Open(archive)
	if err != nil {
		return "", 0, err
	}
	defer af.Close()
	n, err := Extract(af, dest)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", archive, err)
	}
	for _, must := range []string{"incidents.json", "tsdb"} {
		if _, err := os.Stat(filepath.Join(dest, must)); err != nil {
			return "", 0, fmt.Errorf("export lacks %s", must)
		}
	}
	return dest, n, nil
}
