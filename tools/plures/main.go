// Command plures inspects PluresDB databases and shows the engine at work.
//
//	plures demo [-keys N] [-dir DIR]          a tour of the engine on a temporary directory
//	plures stats [-json] DIR                  levels, files and counters of a database
//	plures lsm [-json] [-html FILE] DIR       every table of the tree, optionally drawn as HTML
//	plures get [-json] DIR KEY                a document: value, fields, counters
//	plures scan [-json] [-prefix P] [-limit N] DIR
//	plures history [-json] DIR KEY            the retained operations on a key
//	plures feed [-json] [-from SEQ[/IDX]] DIR the change feed, to the end of the log
//	plures series list|samples|aggregate ...  time series: names, samples, aggregations
//	plures dump-wal [-json] FILE.log          every record of a log segment
//	plures dump-sst [-json] FILE.sst          a table's properties and entries
//
// Every command but demo opens the database read-only (or reads one file)
// and writes nothing. Exit status: 0 done, 1 an error (a database that
// cannot be opened or read), 2 a usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain runs the command in args and returns the exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "demo":
		err = demo(args[1:])
	case "stats":
		err = stats(args[1:], stdout)
	case "lsm":
		err = lsmCommand(args[1:], stdout)
	case "get":
		err = getCommand(args[1:], stdout)
	case "scan":
		err = scanCommand(args[1:], stdout)
	case "history":
		err = historyCommand(args[1:], stdout)
	case "feed":
		err = feedCommand(args[1:], stdout)
	case "series":
		err = seriesCommand(args[1:], stdout)
	case "dump-wal":
		err = dumpWALCommand(args[1:], stdout)
	case "dump-sst":
		err = dumpSSTCommand(args[1:], stdout)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "plures: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		usage(stderr)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "plures:", err)
		return 2
	}
	fmt.Fprintln(stderr, "plures:", err)
	return 1
}

// usageError is a command line that cannot be run as written: exit
// status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usage error with a message as fmt.Errorf makes it.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// parseFlags parses a command's flags; a bad flag is a usage error, -h
// asks for help (flag.ErrHelp, exit status 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return &usageError{err}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  plures demo [-keys N] [-dir DIR]           run the engine end to end on a temporary directory
  plures stats [-json] DIR                   print the levels and files of a database
  plures lsm [-json] [-html FILE] DIR        print every table; -html also draws the tree as a web page
  plures get [-json] DIR KEY                 print a document: value, fields, counters
  plures scan [-json] [-prefix P] [-limit N] DIR
                                             print documents in key order
  plures history [-json] DIR KEY             print the retained operations on a key
  plures feed [-json] [-from SEQ[/IDX]] DIR  print the change feed after a position
  plures series list [-json] DIR [SELECTOR]  print the series a selector matches (default: all)
  plures series samples [-json] [-from T] [-to T] DIR SERIES
                                             print a series' samples in [from, to)
  plures series aggregate [-json] -fn FN [-step DUR] [-from T] [-to T]
                          [-by L1,L2] [-across FN] DIR SELECTOR
                                             print an aggregation per window
  plures dump-wal [-json] FILE.log           print every record of a log segment
  plures dump-sst [-json] FILE.sst           print a table's properties and entries

Every command but demo opens the database read-only (or reads one file).
-json prints one JSON object per line; byte strings carry "hex" (and
"text" when printable).
`+seriesHelp+`
Exit status: 0 done (an empty result too), 1 an error (a database that
cannot be opened or read), 2 a usage error.
`)
}
