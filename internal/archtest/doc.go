// Package archtest holds no code: its test checks that the module's import
// graph, as go list reports it, follows the import rules table of
// ARCHITECTURE.md, so the document stays true as the code changes.
package archtest
