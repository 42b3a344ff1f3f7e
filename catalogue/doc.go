// Package catalogue owns the agency catalogue: the YAML file that lists the
// provider's customer agencies, their services, credentials and limits. It
// parses and validates the file (reporting file:line: reason), resolves
// per-agency settings from the defaults, and maps bearer tokens to the
// identity they authenticate.
package catalogue
