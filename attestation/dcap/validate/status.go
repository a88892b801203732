package validate

import "fmt"

// TCB statuses, spelled as in Intel's TCB info and QE identity.
const (
	UpToDate                             = "UpToDate"
	SWHardeningNeeded                    = "SWHardeningNeeded"
	ConfigurationNeeded                  = "ConfigurationNeeded"
	ConfigurationAndSWHardeningNeeded    = "ConfigurationAndSWHardeningNeeded"
	OutOfDate                            = "OutOfDate"
	OutOfDateConfigurationNeeded         = "OutOfDateConfigurationNeeded"
	Revoked                              = "Revoked"
	TDRelaunchAdvised                    = "TDRelaunchAdvised"
	TDRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
)

// platformStatus accepts the statuses a TCB info level may carry.
func platformStatus(s string) (string, error) {
	switch s {
	case UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded,
		OutOfDate, OutOfDateConfigurationNeeded, Revoked:
		return s, nil
	}
	return "", fmt.Errorf("unrecognised TCB status %q", s)
}

// moduleStatus accepts the statuses a QE identity or TDX module identity level may carry.
func moduleStatus(s string) (string, error) {
	switch s {
	case UpToDate, OutOfDate, Revoked:
		return s, nil
	}
	return "", fmt.Errorf("unrecognised TCB status %q", s)
}

// convergeWithModule folds a QE or TDX module status into a platform status: an out-of-date or
// revoked enclave/module degrades the platform status the way Intel's library does.
func convergeWithModule(platform, module string) string {
	switch module {
	case OutOfDate:
		switch platform {
		case UpToDate, SWHardeningNeeded:
			return OutOfDate
		case ConfigurationNeeded, ConfigurationAndSWHardeningNeeded:
			return OutOfDateConfigurationNeeded
		}
	case Revoked:
		return Revoked
	}
	return platform
}

func configurationNeeded(s string) bool {
	switch s {
	case ConfigurationNeeded, OutOfDateConfigurationNeeded, ConfigurationAndSWHardeningNeeded, TDRelaunchAdvisedConfigurationNeeded:
		return true
	}
	return false
}
