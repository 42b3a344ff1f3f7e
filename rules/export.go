package rules

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/samdrift/samdrift/catalogue"
)

// Export writes the generated rule file of every agency that accepts data
// to dir/<agency>.yml and returns the paths written.
func Export(c *catalogue.Catalogue, dir, externalURL string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range c.Agencies {
		if !a.Phase.AcceptsData() {
			continue
		}
		b, err := GenerateSLA(c, a, externalURL)
		if err != nil {
			return out, fmt.Errorf("agency %q: %w", a.ID, err)
		}
		if b == nil {
			continue
		}
		path := filepath.Join(dir, a.ID+".yml")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return out, err
		}
		out = append(out, path)
	}
	return out, nil
}
