// Package onboard is the agency lifecycle on the command line: onboarding
// (a catalogue entry with its credential and NATS account), and offboarding
// (intake stopped, data exported, deleted everywhere, entry removed),
// against the catalogue file and a running Samdrift's admin API.
package onboard

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/bus"
	"github.com/samdrift/samdrift/catalogue"
	"github.com/samdrift/samdrift/internal/audit"
)

// Options describe a new agency.
type Options struct {
	File     string // the catalogue
	ID, Name string
	Phase    catalogue.Phase
	Timezone string
	Remedy   catalogue.Remedy
	// Services: either Service (ID=NAME) with Probe (ID=URL or ID=host:port),
	// Tier and Availability, or ServicesFile in the catalogue's format.
	Services, Probes []string
	Tier             string
	Availability     float64
	ServicesFile     string
	// NATSDir holds the agencies' NATS account files (default
	// nats-accounts beside the catalogue); NoNATS writes none.
	NATSDir string
	NoNATS  bool
	// Audit receives the onboarding entry; Who is the person.
	Audit *audit.Log
	Who   string
}

// Result is what onboarding made. The token and NATS password are shown
// only now: the catalogue and account files keep hashes.
type Result struct {
	Catalogue    *catalogue.Catalogue
	Credential   string
	Token        string
	NATSUser     string
	NATSPassword string
	NATSFile     string
}

// Onboard adds the agency to the catalogue file, with a push credential
// and (unless NoNATS) a NATS account. Nothing is changed on error.
func Onboard(o Options) (*Result, error) {
	cat, err := catalogue.LoadFile(o.File)
	if err != nil {
		return nil, err
	}
	if cat.Agency(o.ID) != nil {
		return nil, fmt.Errorf("agency %q is already in %s", o.ID, o.File)
	}
	var services []*yaml.Node
	switch {
	case o.ServicesFile != "" && len(o.Services) > 0:
		return nil, errors.New("give services either with --service or with --services FILE, not both")
	case o.ServicesFile != "" && len(o.Probes) > 0:
		return nil, errors.New("--probe goes with --service; put probes in the services file")
	case o.ServicesFile != "":
		services, err = servicesFromFile(o.ServicesFile)
	default:
		services, err = flagServices(o.Services, o.Probes, o.Tier, o.Availability)
	}
	if err != nil {
		return nil, err
	}
	token, err := NewToken()
	if err != nil {
		return nil, err
	}
	res := &Result{Credential: o.ID + "-push", Token: token}
	entry := catalogue.Agency{ID: o.ID, Name: o.Name, Phase: o.Phase, Timezone: o.Timezone, Remedy: o.Remedy,
		Credentials: []catalogue.Credential{{Name: res.Credential, TokenSHA256: catalogue.HashToken(token)}}}
	body, err := entryYAML(entry, services)
	if err != nil {
		return nil, err
	}
	// The NATS account first (it refuses to overwrite); the catalogue write
	// is the commit point, and undoes the account if it fails.
	if !o.NoNATS {
		if res.NATSPassword, err = randomSecret(""); err != nil {
			return nil, err
		}
		h, err := bcrypt.GenerateFromPassword([]byte(res.NATSPassword), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		dir := o.NATSDir
		if dir == "" {
			dir = filepath.Join(filepath.Dir(o.File), "nats-accounts")
		}
		res.NATSUser = o.ID
		if res.NATSFile, err = bus.WriteAgencyAccount(dir, o.ID, o.ID, string(h)); err != nil {
			return nil, err
		}
	}
	if res.Catalogue, err = catalogue.AddAgency(o.File, body); err != nil {
		if res.NATSFile != "" {
			_ = bus.RemoveAgencyAccount(filepath.Dir(res.NATSFile), o.ID)
		}
		return nil, err
	}
	_ = o.Audit.Write(audit.Entry{Who: o.Who, Action: "agency_onboarded", Agency: o.ID,
		Detail: map[string]any{"name": o.Name, "phase": o.Phase, "company": o.Remedy.Company, "credential": res.Credential,
			"nats_account": res.NATSFile != "", "services": len(services)}})
	return res, nil
}

// entryYAML is the catalogue entry of an agency, with services as given
// (a services file keeps its own formatting and comments).
func entryYAML(a catalogue.Agency, services []*yaml.Node) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(struct {
		ID          string                 `yaml:"id"`
		Name        string                 `yaml:"name"`
		Phase       catalogue.Phase        `yaml:"phase"`
		Timezone    string                 `yaml:"timezone,omitempty"`
		Remedy      catalogue.Remedy       `yaml:"remedy,omitempty"`
		Credentials []catalogue.Credential `yaml:"credentials"`
	}{a.ID, a.Name, a.Phase, a.Timezone, a.Remedy, a.Credentials}); err != nil {
		return nil, err
	}
	if len(services) > 0 {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "services"}, &yaml.Node{Kind: yaml.SequenceNode, Content: services})
	}
	return yaml.Marshal(&n)
}

// servicesFromFile reads a services YAML file: a list of services in the
// catalogue's format, or a mapping with a services key.
func servicesFromFile(path string) ([]*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: no services", path)
	}
	n := doc.Content[0]
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "services" {
				n = n.Content[i+1]
			}
		}
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of services (or a mapping with a services list)", path, n.Line)
	}
	return n.Content, nil
}

// flagServices builds services from --service ID=NAME and --probe ID=TARGET.
func flagServices(svcs, probes []string, tier string, availability float64) ([]*yaml.Node, error) {
	var out []*catalogue.Service
	idx := map[string]int{}
	for _, s := range svcs {
		id, name, ok := strings.Cut(s, "=")
		if !ok || id == "" || name == "" {
			return nil, fmt.Errorf("--service %q: want ID=NAME", s)
		}
		idx[id] = len(out)
		out = append(out, &catalogue.Service{ID: id, Name: name, Tier: tier, SLA: &catalogue.SLA{Availability: availability}})
	}
	for _, p := range probes {
		id, target, ok := strings.Cut(p, "=")
		i, known := idx[id]
		if !ok || target == "" {
			return nil, fmt.Errorf("--probe %q: want SERVICE=URL or SERVICE=host:port", p)
		}
		if !known {
			return nil, fmt.Errorf("--probe %q: no --service %s", p, id)
		}
		pr := catalogue.Probe{TCP: target}
		if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
			pr = catalogue.Probe{HTTP: target}
		}
		out[i].Probes = append(out[i].Probes, pr)
	}
	var nodes []*yaml.Node
	for _, s := range out {
		var n yaml.Node
		if err := n.Encode(s); err != nil {
			return nil, err
		}
		nodes = append(nodes, &n)
	}
	return nodes, nil
}

// NewToken returns a new random bearer token: "sd_" and 32 bytes from
// crypto/rand.
func NewToken() (string, error) { return random("sd_", 32) }

func randomSecret(prefix string) (string, error) { return random(prefix, 24) }

func random(prefix string, n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}
