// Package conformance runs third-party Mesos v1 API clients — today
// github.com/mesos/mesos-go at v0.0.11 — against a real `corral local`
// (master and agent in one process on loopback).
//
// It is its own Go module so that mesos-go and the old dependencies it needs
// (gogo/protobuf, pquerna/ffjson) never enter the product's go.mod. All the
// code is in _test.go files; see README.md for how to run it.
package conformance
