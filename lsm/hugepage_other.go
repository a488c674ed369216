//go:build !linux

package lsm

func adviseHugePages([]byte) {}
