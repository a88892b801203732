package pal_test

const (
	crashLibEnv  = "PAL_TEST_CRASH_LIB"
	crashArgsEnv = "PAL_TEST_CRASH_ARGS"
)

func runCrashChild(lib, args string) int { return 99 }
