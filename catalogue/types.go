package catalogue

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"
)

// Duration is a duration in Prometheus syntax (15s, 5m, 1h, 30d).
type Duration time.Duration

// UnmarshalYAML parses a Prometheus duration, reporting the line on error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := model.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: invalid duration %q (use Prometheus syntax such as 15s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Prometheus syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration in Prometheus syntax.
func (d Duration) String() string { return model.Duration(d).String() }

// RelabelConfigs are Prometheus relabel configs.
type RelabelConfigs []*relabel.Config

// UnmarshalYAML decodes each relabel config, reporting the line on error
// (Prometheus's own unmarshaler does not know it).
func (rc *RelabelConfigs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: relabel_configs must be a list", n.Line)
	}
	out := make(RelabelConfigs, 0, len(n.Content))
	for _, c := range n.Content {
		cfg := &relabel.Config{}
		if err := c.Decode(cfg); err != nil {
			return fmt.Errorf("line %d: %w", c.Line, err)
		}
		out = append(out, cfg)
	}
	*rc = out
	return nil
}
