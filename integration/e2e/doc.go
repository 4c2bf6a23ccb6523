// Package e2e holds Corral's root end-to-end tests and benchmarks: they run
// the real binaries (`corral local`, `corral run`, a custom executor) on
// loopback and drive them through the public v1 scheduler API. As non-root
// they skip and say so.
//
// Everything a test makes lives under a work dir named by
// testsupport.Prefix, so a process, cgroup or mount left behind is found
// by testsupport.CheckLeaks.
package e2e
