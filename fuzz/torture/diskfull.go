package main

type DiskFullFigures struct {
	Injections, AckedBatches, AckedWrites, FailedCommits, OtherErrors, Lost, ReopenFailures, ResumeFailures int
	CommitErrors, OtherErrorKinds                                                                           map[string]int
	Failures                                                                                                []string
}
