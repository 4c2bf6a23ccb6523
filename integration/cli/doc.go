// Package cli tests the corral command line as a user meets it: the built
// binaries (`corral local`, `corral master` + `corral agent`, `corral run`,
// `corral version`) started on loopback ports and judged by their output,
// exit codes and what they leave behind. The tests that run containers need
// root and skip without it; everything they make is named by
// testsupport.Prefix and checked by testsupport.CheckLeaks.
package cli
