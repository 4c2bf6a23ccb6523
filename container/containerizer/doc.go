// Package containerizer runs containers as Mesos does: one Launcher that
// starts and kills the processes, and an ordered list of Isolators that each
// own one kind of isolation (their contract is package container). It knows
// nothing of tasks or frameworks; the agent hands it a container.Config and
// learns how the container ended.
package containerizer
