package dashboards

// The subset of Grafana's dashboard JSON model Samdrift writes.

// Dashboard is a Grafana dashboard.
type Dashboard struct {
	UID           string       `json:"uid"`
	Title         string       `json:"title"`
	Description   string       `json:"description,omitempty"`
	Tags          []string     `json:"tags"`
	Timezone      string       `json:"timezone"`
	SchemaVersion int          `json:"schemaVersion"`
	Refresh       string       `json:"refresh"`
	Time          TimeRange    `json:"time"`
	Editable      bool         `json:"editable"`
	Templating    Templating   `json:"templating"`
	Annotations   Annotations  `json:"annotations"`
	Panels        []Panel      `json:"panels"`
	Links         []Link       `json:"links,omitempty"`
	Samdrift      *Fingerprint `json:"samdrift,omitempty"`
}

// Fingerprint marks a dashboard as Samdrift's and records what generated it,
// so that provisioning can tell whether Grafana's copy is current.
type Fingerprint struct {
	Generator string `json:"generator"`
	Hash      string `json:"hash"`
}

// TimeRange is the default time range.
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Templating holds dashboard variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a dashboard variable.
type Variable struct {
	Name       string      `json:"name"`
	Label      string      `json:"label,omitempty"`
	Type       string      `json:"type"`
	Query      any         `json:"query,omitempty"`
	Datasource *Datasource `json:"datasource,omitempty"`
	Refresh    int         `json:"refresh,omitempty"`
	Multi      bool        `json:"multi"`
	IncludeAll bool        `json:"includeAll"`
	Current    any         `json:"current,omitempty"`
}

// Annotations holds annotation queries.
type Annotations struct {
	List []Annotation `json:"list"`
}

// Annotation is a PromQL annotation query.
type Annotation struct {
	Name            string      `json:"name"`
	Datasource      *Datasource `json:"datasource"`
	Enable          bool        `json:"enable"`
	Expr            string      `json:"expr"`
	IconColor       string      `json:"iconColor"`
	Step            string      `json:"step,omitempty"`
	TitleFormat     string      `json:"titleFormat,omitempty"`
	TextFormat      string      `json:"textFormat,omitempty"`
	UseValueForTime bool        `json:"useValueForTime,omitempty"`
}

// Datasource refers to a data source by uid.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a dashboard panel.
type Panel struct {
	ID              int          `json:"id"`
	Type            string       `json:"type"`
	Title           string       `json:"title"`
	Description     string       `json:"description,omitempty"`
	GridPos         GridPos      `json:"gridPos"`
	Datasource      *Datasource  `json:"datasource,omitempty"`
	Targets         []Target     `json:"targets,omitempty"`
	FieldConfig     *FieldConfig `json:"fieldConfig,omitempty"`
	Options         any          `json:"options,omitempty"`
	Transformations []any        `json:"transformations,omitempty"`
}

// GridPos places a panel (24 columns).
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Target is a PromQL query of a panel.
type Target struct {
	RefID        string      `json:"refId"`
	Datasource   *Datasource `json:"datasource,omitempty"`
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat,omitempty"`
	Instant      bool        `json:"instant,omitempty"`
	Range        bool        `json:"range,omitempty"`
	Format       string      `json:"format,omitempty"`
	Interval     string      `json:"interval,omitempty"`
}

// FieldConfig sets units and thresholds.
type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

// FieldDefaults are a panel's field defaults.
type FieldDefaults struct {
	Unit       string      `json:"unit,omitempty"`
	Decimals   *int        `json:"decimals,omitempty"`
	Min        *float64    `json:"min,omitempty"`
	Max        *float64    `json:"max,omitempty"`
	Thresholds *Thresholds `json:"thresholds,omitempty"`
	Color      any         `json:"color,omitempty"`
	Mappings   []any       `json:"mappings,omitempty"`
}

// Thresholds color values.
type Thresholds struct {
	Mode  string `json:"mode"`
	Steps []Step `json:"steps"`
}

// Step is one threshold step (Value nil: the base).
type Step struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// Link is a dashboard link.
type Link struct {
	Title      string   `json:"title"`
	Type       string   `json:"type"`
	URL        string   `json:"url,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	AsDropdown bool     `json:"asDropdown,omitempty"`
}
