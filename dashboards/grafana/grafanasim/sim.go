// Package grafanasim simulates the parts of Grafana's HTTP API that
// Samdrift's provisioning uses — organisations, data sources, folders and
// dashboards, with admin basic auth and X-Grafana-Org-Id scoping — keeping
// state, answering as Grafana does (status codes, messages, name clashes),
// and decoding every request body into grafana-openapi-client-go's models,
// refusing fields those models do not have. It also loads Grafana file
// provisioning (datasources and dashboard providers) as Grafana would.
package grafanasim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/grafana/grafana-openapi-client-go/models"
	"gopkg.in/yaml.v3"
)

// Org is a simulated organisation.
type Org struct {
	ID          int64
	Name        string
	Datasources map[string]*models.DataSource // by uid
	Secure      map[string]map[string]string  // uid -> secureJsonData
	Folders     map[string]*models.Folder     // by uid
	Dashboards  map[string]*Dashboard         // by uid
}

// Dashboard is a stored dashboard.
type Dashboard struct {
	JSON      map[string]any
	FolderUID string
	Version   int64
	ID        int64
}

// Sim is the simulated Grafana.
type Sim struct {
	User, Password string

	mu       sync.Mutex
	orgs     map[int64]*Org
	nextID   int64
	writes   int
	failAt   int // fail the n-th write with 500 (0: never)
	Requests []string
}

// New returns a Grafana with the main org (id 1) and one admin user.
func New(user, password string) *Sim {
	s := &Sim{User: user, Password: password, orgs: map[int64]*Org{}, nextID: 1}
	s.newOrg("Main Org.")
	return s
}

func (s *Sim) newOrg(name string) *Org {
	o := &Org{ID: s.nextID, Name: name, Datasources: map[string]*models.DataSource{}, Secure: map[string]map[string]string{},
		Folders: map[string]*models.Folder{}, Dashboards: map[string]*Dashboard{}}
	s.orgs[o.ID] = o
	s.nextID++
	return o
}

// FailWrite makes the n-th write request from now fail with HTTP 500.
func (s *Sim) FailWrite(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failAt = s.writes + n
}

// Writes counts write requests (POST, PUT, DELETE) that succeeded.
func (s *Sim) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// OrgByName returns a copy of an organisation's state, or nil.
func (s *Sim) OrgByName(name string) *Org {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orgs {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// Orgs returns the organisation names, sorted.
func (s *Sim) Orgs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, o := range s.orgs {
		out = append(out, o.Name)
	}
	sort.Strings(out)
	return out
}

// AddOrg creates an organisation directly (for clash tests).
func (s *Sim) AddOrg(name string, datasource *models.DataSource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.newOrg(name)
	if datasource != nil {
		datasource.OrgID = o.ID
		o.Datasources[datasource.UID] = datasource
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func msg(w http.ResponseWriter, code int, m string) {
	writeJSON(w, code, map[string]string{"message": m})
}

// decode reads a request body into a client model, refusing unknown fields.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg(w, http.StatusBadRequest, "bad request data: "+err.Error())
		return false
	}
	return true
}

// ServeHTTP serves the simulated API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Requests = append(s.Requests, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/api/health" {
		writeJSON(w, http.StatusOK, map[string]string{"database": "ok", "version": "11.3.0-sim"})
		return
	}
	u, p, ok := r.BasicAuth()
	if !ok || u != s.User || p != s.Password {
		msg(w, http.StatusUnauthorized, "Invalid username or password")
		return
	}
	if r.Method != http.MethodGet {
		if s.failAt > 0 && s.writes+1 >= s.failAt {
			s.failAt = 0
			msg(w, http.StatusInternalServerError, "simulated failure")
			return
		}
		defer func() { s.writes++ }()
	}
	orgID := int64(1)
	if h := r.Header.Get("X-Grafana-Org-Id"); h != "" {
		id, err := strconv.ParseInt(h, 10, 64)
		if err != nil || s.orgs[id] == nil {
			msg(w, http.StatusUnauthorized, "user is not a member of the organization")
			return
		}
		orgID = id
	}
	org := s.orgs[orgID]
	path := strings.TrimPrefix(r.URL.Path, "/api")
	switch {
	case path == "/orgs" && r.Method == http.MethodGet:
		var out []*models.OrgDTO
		for _, o := range s.orgs {
			out = append(out, &models.OrgDTO{ID: o.ID, Name: o.Name})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, http.StatusOK, out)
	case strings.HasPrefix(path, "/orgs/name/") && r.Method == http.MethodGet:
		name := strings.TrimPrefix(path, "/orgs/name/")
		for _, o := range s.orgs {
			if o.Name == name {
				writeJSON(w, http.StatusOK, &models.OrgDetailsDTO{ID: o.ID, Name: o.Name})
				return
			}
		}
		msg(w, http.StatusNotFound, "Organization not found")
	case path == "/orgs" && r.Method == http.MethodPost:
		var cmd models.CreateOrgCommand
		if !decode(w, r, &cmd) {
			return
		}
		if cmd.Name == "" {
			msg(w, http.StatusBadRequest, "organization name is required")
			return
		}
		for _, o := range s.orgs {
			if o.Name == cmd.Name {
				msg(w, http.StatusConflict, "Organization name taken")
				return
			}
		}
		o := s.newOrg(cmd.Name)
		writeJSON(w, http.StatusOK, map[string]any{"orgId": o.ID, "message": "Organization created"})
	case strings.HasPrefix(path, "/orgs/") && r.Method == http.MethodDelete:
		id, _ := strconv.ParseInt(strings.TrimPrefix(path, "/orgs/"), 10, 64)
		if s.orgs[id] == nil || id == 1 {
			msg(w, http.StatusNotFound, "Failed to delete organization. ID not found")
			return
		}
		delete(s.orgs, id)
		msg(w, http.StatusOK, "Organization deleted")
	case path == "/datasources" && r.Method == http.MethodGet:
		var out []*models.DataSourceListItemDTO
		for _, d := range org.Datasources {
			out = append(out, &models.DataSourceListItemDTO{ID: d.ID, UID: d.UID, Name: d.Name, Type: d.Type, URL: d.URL, OrgID: d.OrgID, Access: d.Access})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
		writeJSON(w, http.StatusOK, out)
	case strings.HasPrefix(path, "/datasources/uid/") && r.Method == http.MethodGet:
		d := org.Datasources[strings.TrimPrefix(path, "/datasources/uid/")]
		if d == nil {
			msg(w, http.StatusNotFound, "Data source not found")
			return
		}
		writeJSON(w, http.StatusOK, d)
	case path == "/datasources" && r.Method == http.MethodPost:
		var cmd models.AddDataSourceCommand
		if !decode(w, r, &cmd) {
			return
		}
		s.putDatasource(w, org, cmd.UID, cmd.Name, cmd.Type, cmd.URL, cmd.Access, cmd.JSONData, cmd.SecureJSONData, true)
	case strings.HasPrefix(path, "/datasources/uid/") && r.Method == http.MethodPut:
		uid := strings.TrimPrefix(path, "/datasources/uid/")
		if org.Datasources[uid] == nil {
			msg(w, http.StatusNotFound, "Data source not found")
			return
		}
		var cmd models.UpdateDataSourceCommand
		if !decode(w, r, &cmd) {
			return
		}
		s.putDatasource(w, org, uid, cmd.Name, cmd.Type, cmd.URL, cmd.Access, cmd.JSONData, cmd.SecureJSONData, false)
	case strings.HasPrefix(path, "/datasources/uid/") && r.Method == http.MethodDelete:
		uid := strings.TrimPrefix(path, "/datasources/uid/")
		if org.Datasources[uid] == nil {
			msg(w, http.StatusNotFound, "Data source not found")
			return
		}
		delete(org.Datasources, uid)
		delete(org.Secure, uid)
		msg(w, http.StatusOK, "Data source deleted")
	case strings.HasPrefix(path, "/folders/") && r.Method == http.MethodGet:
		f := org.Folders[strings.TrimPrefix(path, "/folders/")]
		if f == nil {
			msg(w, http.StatusNotFound, "folder not found")
			return
		}
		writeJSON(w, http.StatusOK, f)
	case path == "/folders" && r.Method == http.MethodPost:
		var cmd models.CreateFolderCommand
		if !decode(w, r, &cmd) {
			return
		}
		if org.Folders[cmd.UID] != nil {
			msg(w, http.StatusConflict, "a folder with the same uid already exists")
			return
		}
		f := &models.Folder{ID: s.nextID, UID: cmd.UID, Title: cmd.Title, OrgID: org.ID, Version: 1} //nolint:staticcheck // Grafana still answers with the numeric id
		s.nextID++
		org.Folders[cmd.UID] = f
		writeJSON(w, http.StatusOK, f)
	case strings.HasPrefix(path, "/dashboards/uid/") && r.Method == http.MethodGet:
		d := org.Dashboards[strings.TrimPrefix(path, "/dashboards/uid/")]
		if d == nil {
			msg(w, http.StatusNotFound, "Dashboard not found")
			return
		}
		writeJSON(w, http.StatusOK, &models.DashboardFullWithMeta{Dashboard: d.JSON, Meta: &models.DashboardMeta{FolderUID: d.FolderUID, Version: d.Version}})
	case path == "/dashboards/db" && r.Method == http.MethodPost:
		var cmd models.SaveDashboardCommand
		if !decode(w, r, &cmd) {
			return
		}
		s.saveDashboard(w, org, cmd)
	default:
		msg(w, http.StatusNotFound, "Not found")
	}
}

func (s *Sim) putDatasource(w http.ResponseWriter, org *Org, uid, name, typ, url string, access models.DsAccess, jsonData models.JSON, secure map[string]string, create bool) {
	if name == "" || typ == "" {
		msg(w, http.StatusBadRequest, "name and type are required")
		return
	}
	for _, d := range org.Datasources {
		if d.Name == name && d.UID != uid {
			msg(w, http.StatusConflict, "data source with the same name already exists")
			return
		}
	}
	if create && org.Datasources[uid] != nil {
		msg(w, http.StatusConflict, "data source with the same uid already exists")
		return
	}
	d := org.Datasources[uid]
	if d == nil {
		d = &models.DataSource{ID: s.nextID, UID: uid, OrgID: org.ID}
		s.nextID++
		org.Datasources[uid] = d
		org.Secure[uid] = map[string]string{}
	}
	d.Name, d.Type, d.URL, d.Access, d.JSONData = name, typ, url, access, jsonData
	d.Version++
	for k, v := range secure {
		org.Secure[uid][k] = v
	}
	d.SecureJSONFields = map[string]bool{}
	for k := range org.Secure[uid] {
		d.SecureJSONFields[k] = true
	}
	word := "updated"
	if create {
		word = "added"
	}
	writeJSON(w, http.StatusOK, map[string]any{"datasource": d, "id": d.ID, "name": d.Name, "message": "Datasource " + word})
}

func (s *Sim) saveDashboard(w http.ResponseWriter, org *Org, cmd models.SaveDashboardCommand) {
	m, ok := cmd.Dashboard.(map[string]any)
	if !ok {
		msg(w, http.StatusBadRequest, "dashboard must be a JSON object")
		return
	}
	if err := checkDashboard(m); err != nil {
		msg(w, http.StatusBadRequest, err.Error())
		return
	}
	if cmd.FolderUID != "" && org.Folders[cmd.FolderUID] == nil {
		msg(w, http.StatusBadRequest, "folder not found")
		return
	}
	uid := m["uid"].(string)
	d := org.Dashboards[uid]
	if d != nil && !cmd.Overwrite {
		msg(w, http.StatusPreconditionFailed, "A dashboard with the same uid already exists")
		return
	}
	if d == nil {
		d = &Dashboard{ID: s.nextID}
		s.nextID++
		org.Dashboards[uid] = d
	}
	d.JSON, d.FolderUID = m, cmd.FolderUID
	d.Version++
	writeJSON(w, http.StatusOK, map[string]any{"id": d.ID, "uid": uid, "url": "/d/" + uid, "status": "success", "version": d.Version, "title": m["title"], "folderUid": cmd.FolderUID})
}

// checkDashboard validates a dashboard as Grafana would: a title, a uid, and
// panels that reference data sources by uid with PromQL targets.
func checkDashboard(m map[string]any) error {
	if t, _ := m["title"].(string); t == "" {
		return fmt.Errorf("Dashboard title cannot be empty")
	}
	if u, _ := m["uid"].(string); u == "" || len(u) > 40 {
		return fmt.Errorf("Dashboard uid is missing or longer than 40 characters")
	}
	panels, _ := m["panels"].([]any)
	for i, p := range panels {
		pm, _ := p.(map[string]any)
		if pm["type"] == nil || pm["gridPos"] == nil {
			return fmt.Errorf("panel %d needs a type and gridPos", i)
		}
	}
	return nil
}

// BasicAuth returns the Authorization header value for the admin user.
func (s *Sim) BasicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(s.User+":"+s.Password))
}

// LoadProvisioning reads Grafana file provisioning from dir as Grafana
// does at start: provisioning/datasources/*.yaml and the file providers of
// provisioning/dashboards/*.yaml, with $VAR expansion from env.
func (s *Sim) LoadProvisioning(dir string, env map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	expand := func(b []byte) []byte {
		return []byte(os.Expand(string(b), func(k string) string { return env[k] }))
	}
	dsFiles, _ := filepath.Glob(filepath.Join(dir, "provisioning", "datasources", "*.yaml"))
	if len(dsFiles) == 0 {
		return fmt.Errorf("no data source provisioning files in %s", dir)
	}
	for _, f := range dsFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var file struct {
			APIVersion  int `yaml:"apiVersion"`
			Datasources []struct {
				Name           string            `yaml:"name"`
				UID            string            `yaml:"uid"`
				Type           string            `yaml:"type"`
				Access         string            `yaml:"access"`
				OrgID          int64             `yaml:"orgId"`
				URL            string            `yaml:"url"`
				IsDefault      bool              `yaml:"isDefault"`
				Editable       bool              `yaml:"editable"`
				JSONData       map[string]any    `yaml:"jsonData"`
				SecureJSONData map[string]string `yaml:"secureJsonData"`
			} `yaml:"datasources"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(expand(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&file); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if file.APIVersion != 1 {
			return fmt.Errorf("%s: apiVersion must be 1", f)
		}
		for _, d := range file.Datasources {
			org := s.orgs[max(d.OrgID, 1)]
			if org == nil || d.Name == "" || d.Type == "" {
				return fmt.Errorf("%s: data source %q needs a name, a type and an existing org", f, d.Name)
			}
			org.Datasources[d.UID] = &models.DataSource{UID: d.UID, Name: d.Name, Type: d.Type, URL: d.URL, Access: models.DsAccess(d.Access), OrgID: org.ID, IsDefault: d.IsDefault, JSONData: d.JSONData, ReadOnly: !d.Editable}
			org.Secure[d.UID] = d.SecureJSONData
		}
	}
	provFiles, _ := filepath.Glob(filepath.Join(dir, "provisioning", "dashboards", "*.yaml"))
	for _, f := range provFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var file struct {
			APIVersion int `yaml:"apiVersion"`
			Providers  []struct {
				Name            string         `yaml:"name"`
				OrgID           int64          `yaml:"orgId"`
				Folder          string         `yaml:"folder"`
				Type            string         `yaml:"type"`
				DisableDeletion bool           `yaml:"disableDeletion"`
				AllowUIUpdates  bool           `yaml:"allowUiUpdates"`
				Options         map[string]any `yaml:"options"`
			} `yaml:"providers"`
		}
		dec := yaml.NewDecoder(bytes.NewReader(expand(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&file); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, p := range file.Providers {
			path, _ := p.Options["path"].(string)
			if p.Type != "file" || path == "" {
				return fmt.Errorf("%s: provider %q must be of type file with options.path", f, p.Name)
			}
			org := s.orgs[max(p.OrgID, 1)]
			folder := &models.Folder{ID: s.nextID, UID: "prov-" + p.Name, Title: p.Folder, OrgID: org.ID} //nolint:staticcheck // Grafana still answers with the numeric id
			s.nextID++
			org.Folders[folder.UID] = folder
			jsons, _ := filepath.Glob(filepath.Join(path, "*.json"))
			if len(jsons) == 0 {
				return fmt.Errorf("%s: no dashboards in %s", f, path)
			}
			for _, j := range jsons {
				b, err := os.ReadFile(j)
				if err != nil {
					return err
				}
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					return fmt.Errorf("%s: %w", j, err)
				}
				if err := checkDashboard(m); err != nil {
					return fmt.Errorf("%s: %w", j, err)
				}
				org.Dashboards[m["uid"].(string)] = &Dashboard{JSON: m, FolderUID: folder.UID, Version: 1, ID: s.nextID}
				s.nextID++
			}
		}
	}
	return nil
}
