package bus

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ProviderAccount is the NATS account Samdrift runs in on a NATS cluster
// with accounts. It must export the service "ingest.*.nats.*" for agencies
// that publish to NATS directly (deploy/nats shows the block).
const ProviderAccount = "SAMDRIFT"

// Subjects an agency publishes on from its own NATS account: a Prometheus
// remote-write 1.0 WriteRequest, snappy-compressed (metrics), or a JSON
// array of Alertmanager v2 alerts (alerts). The account's imports map them
// to ingest.<kind>.nats.<agency> in the provider account, so the agency is
// decided by the account the sender authenticated to, never by what it sent.
const (
	AgencyMetricsSubject = "samdrift.metrics"
	AgencyAlertsSubject  = "samdrift.alerts"
)

// AccountIndex is the file in an accounts directory that includes every
// agency's account file; include it from the server's accounts block.
const AccountIndex = "index.conf"

var safeID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// AgencyAccount renders the NATS server configuration of an agency's
// account: one user (password given as a bcrypt hash), allowed to publish
// only on the agency subjects, which import the provider's ingest service.
func AgencyAccount(agency, user, bcryptHash string) ([]byte, error) {
	if !safeID.MatchString(agency) {
		return nil, fmt.Errorf("agency id %q cannot name a NATS account", agency)
	}
	if !strings.HasPrefix(bcryptHash, "$2") {
		return nil, errors.New("the NATS password must be given as a bcrypt hash")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# NATS account of agency %s, written by `samdrift agency onboard`.\n", agency)
	fmt.Fprintf(&b, "# It publishes metrics on %q and alerts on %q; the imports below\n", AgencyMetricsSubject, AgencyAlertsSubject)
	fmt.Fprintf(&b, "# hand them to Samdrift labelled with this account's agency only.\n")
	fmt.Fprintf(&b, "%q: {\n", AccountName(agency))
	fmt.Fprintf(&b, "  users: [\n    {user: %q, password: %q,\n", user, bcryptHash)
	fmt.Fprintf(&b, "     permissions: {publish: {allow: [%q, %q]}, subscribe: {allow: [\"_INBOX.>\"]}}}\n  ]\n", AgencyMetricsSubject, AgencyAlertsSubject)
	fmt.Fprintf(&b, "  imports: [\n")
	fmt.Fprintf(&b, "    {service: {account: %q, subject: %q}, to: %q}\n", ProviderAccount, IngestSubject(KindMetrics, SourceNATS, agency), AgencyMetricsSubject)
	fmt.Fprintf(&b, "    {service: {account: %q, subject: %q}, to: %q}\n", ProviderAccount, IngestSubject(KindAlerts, SourceNATS, agency), AgencyAlertsSubject)
	fmt.Fprintf(&b, "  ]\n}\n")
	return b.Bytes(), nil
}

// AccountName is the NATS account of an agency.
func AccountName(agency string) string { return "agency_" + agency }

// WriteAgencyAccount writes <dir>/<agency>.conf and rewrites the index. It
// refuses to overwrite an existing account file.
func WriteAgencyAccount(dir, agency, user, bcryptHash string) (string, error) {
	conf, err := AgencyAccount(agency, user, bcryptHash)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	p := filepath.Join(dir, agency+".conf")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("nats account: %w", err)
	}
	if _, err := f.Write(conf); err != nil {
		f.Close()
		os.Remove(p)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(p)
		return "", err
	}
	if err := writeAccountIndex(dir); err != nil {
		os.Remove(p)
		return "", err
	}
	return p, nil
}

// RemoveAgencyAccount deletes an agency's account file, if any, and
// rewrites the index.
func RemoveAgencyAccount(dir, agency string) error {
	if err := os.Remove(filepath.Join(dir, agency+".conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return writeAccountIndex(dir)
}

func writeAccountIndex(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var b bytes.Buffer
	b.WriteString("# Agency NATS accounts, rewritten by samdrift agency onboard|offboard.\n")
	b.WriteString("# Include this file inside the server's accounts block, then reload the server.\n")
	for _, f := range files {
		if filepath.Base(f) == AccountIndex {
			continue
		}
		fmt.Fprintf(&b, "include %q\n", filepath.Base(f))
	}
	tmp := filepath.Join(dir, "."+AccountIndex+".tmp")
	if err := os.WriteFile(tmp, b.Bytes(), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, AccountIndex))
}
