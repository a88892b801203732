package validate

import "testing"

func TestConvergeWithModule(t *testing.T) {
	tests := []struct{ platform, module, want string }{
		{UpToDate, UpToDate, UpToDate},
		{UpToDate, OutOfDate, OutOfDate},
		{SWHardeningNeeded, OutOfDate, OutOfDate},
		{ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded},
		{ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded},
		{OutOfDate, OutOfDate, OutOfDate},
		{OutOfDateConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded},
		{Revoked, OutOfDate, Revoked},
		{UpToDate, Revoked, Revoked},
		{ConfigurationNeeded, UpToDate, ConfigurationNeeded},
		{SWHardeningNeeded, "", SWHardeningNeeded},
	}
	for _, tc := range tests {
		if got := convergeWithModule(tc.platform, tc.module); got != tc.want {
			t.Errorf("converge(%s, %s) = %s, want %s", tc.platform, tc.module, got, tc.want)
		}
	}
}

func TestStatusSets(t *testing.T) {
	for _, s := range []string{UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked} {
		if _, err := platformStatus(s); err != nil {
			t.Errorf("platform status %s rejected", s)
		}
	}
	for _, s := range []string{TDRelaunchAdvised, "", "uptodate"} {
		if _, err := platformStatus(s); err == nil {
			t.Errorf("platform status %q accepted", s)
		}
	}
	for _, s := range []string{SWHardeningNeeded, ConfigurationNeeded} {
		if _, err := moduleStatus(s); err == nil {
			t.Errorf("module status %q accepted", s)
		}
	}
}
