// Package dashboards generates Samdrift's dashboards from the catalogue, as
// Grafana dashboard JSON: the NOC overview of every agency and service, and
// one SLA dashboard per agency. Subpackages provision them into Grafana
// (grafana), export them as Grafana file provisioning (Export), and serve a
// built-in console (console) for sites without Grafana.
package dashboards
