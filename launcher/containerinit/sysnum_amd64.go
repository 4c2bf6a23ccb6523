package containerinit

const sysSeccomp = 317
