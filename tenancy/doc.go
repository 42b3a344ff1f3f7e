// Package tenancy decides who may see what. It owns:
//
//   - identities: who a bearer token, a verified client certificate or a
//     console session is (Identity, Guard.Authenticate);
//   - authorisation with its audit trail: Guard.Authorize writes the audit
//     entry of every denial;
//   - the agency label (Label) and which agencies a PromQL expression
//     selects (Selects), for the query API's audit and agency rule files;
//   - the provider-side query helper (Scope) that every query computing an
//     agency's figures goes through: it adds the agency's matcher to every
//     selector, whoever the caller is.
//
// No other package decides tenancy again: handlers ask the Guard, and
// queries for an agency's figures are built with Scope.
package tenancy
