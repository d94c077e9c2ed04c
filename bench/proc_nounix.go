//go:build !unix

package main

import "time"

// processCPU is not measured outside Unix (the worker CPU row stays n/a).
func processCPU() time.Duration { return 0 }
