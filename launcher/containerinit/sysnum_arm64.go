package containerinit

const sysSeccomp = 277
