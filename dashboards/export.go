package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/samdrift/samdrift/catalogue"
)

// TokenEnv is the environment variable Grafana expands in the exported
// data source to the NOC's read-only credential.
const TokenEnv = "SAMDRIFT_GRAFANA_TOKEN"

// ExportResult is what Export wrote.
type ExportResult struct {
	Files []string
	// Env is the line to put in Grafana's environment (the credential).
	Env string
}

// Export writes Grafana file provisioning to dir: provisioning/datasources
// (the Samdrift data source with the NOC's read-only credential, taken from
// $SAMDRIFT_GRAFANA_TOKEN), provisioning/dashboards (a file provider) and
// dashboards/*.json (the NOC overview and every agency's SLA dashboard).
// File provisioning fills one organisation; per-agency isolation in Grafana
// needs an organisation per agency, which `samdrift dashboards provision`
// makes through the API.
func Export(c *catalogue.Catalogue, dir, datasourceURL string, key []byte) (ExportResult, error) {
	var res ExportResult
	abs, err := filepath.Abs(dir)
	if err != nil {
		return res, err
	}
	write := func(rel string, b []byte, mode os.FileMode) error {
		p := filepath.Join(abs, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			return err
		}
		res.Files = append(res.Files, p)
		return nil
	}
	ds := map[string]any{
		"apiVersion": 1,
		"datasources": []map[string]any{{
			"name": "Samdrift", "uid": DatasourceUID, "type": "prometheus", "access": "proxy", "orgId": 1,
			"url": datasourceURL, "isDefault": true, "editable": false,
			"jsonData":       map[string]any{"httpMethod": "POST", "httpHeaderName1": "Authorization", "prometheusType": "Prometheus", "timeInterval": "15s"},
			"secureJsonData": map[string]any{"httpHeaderValue1": "Bearer $" + TokenEnv},
		}},
	}
	b, err := yaml.Marshal(ds)
	if err != nil {
		return res, err
	}
	if err := write("provisioning/datasources/samdrift.yaml", b, 0o644); err != nil {
		return res, err
	}
	prov := map[string]any{
		"apiVersion": 1,
		"providers": []map[string]any{{
			"name": "samdrift", "orgId": 1, "folder": "Samdrift", "type": "file",
			"disableDeletion": false, "allowUiUpdates": false,
			"options": map[string]any{"path": filepath.Join(abs, "dashboards")},
		}},
	}
	if b, err = yaml.Marshal(prov); err != nil {
		return res, err
	}
	if err := write("provisioning/dashboards/samdrift.yaml", b, 0o644); err != nil {
		return res, err
	}
	noc, agencies := All(c)
	all := map[string]Dashboard{"noc.json": noc}
	for id, d := range agencies {
		all["sla-"+id+".json"] = d
	}
	for name, d := range all {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return res, err
		}
		if err := write(filepath.Join("dashboards", name), append(b, '\n'), 0o644); err != nil {
			return res, err
		}
	}
	res.Env = fmt.Sprintf("%s=%s", TokenEnv, catalogue.GrafanaToken(key, catalogue.GrafanaSubjectOps))
	return res, nil
}
