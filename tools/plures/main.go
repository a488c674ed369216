// Command plures inspects PluresDB databases and shows the engine at work.
//
//	plures demo [-keys N] [-dir DIR]          a tour of the engine on a temporary directory
//	plures stats [-json] DIR                  levels, files and counters of a database
//	plures lsm [-json] [-html FILE] DIR       every table of the tree, optionally drawn as HTML
//	plures get [-json] DIR KEY                a document: value, fields, counters
//	plures scan [-json] [-prefix P] [-limit N] DIR
//	plures history [-json] DIR KEY            the retained operations on a key
//	plures feed [-json] [-from SEQ[/IDX]] DIR the change feed, to the end of the log
//	plures dump-wal [-json] FILE.log          every record of a log segment
//	plures dump-sst [-json] FILE.sst          a table's properties and entries
//
// Every command but demo opens the database read-only (or reads one file)
// and writes nothing.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(os.Args[2:])
	case "stats":
		err = stats(os.Args[2:], os.Stdout)
	case "lsm":
		err = lsmCommand(os.Args[2:], os.Stdout)
	case "get":
		err = getCommand(os.Args[2:], os.Stdout)
	case "scan":
		err = scanCommand(os.Args[2:], os.Stdout)
	case "history":
		err = historyCommand(os.Args[2:], os.Stdout)
	case "feed":
		err = feedCommand(os.Args[2:], os.Stdout)
	case "dump-wal":
		err = dumpWALCommand(os.Args[2:], os.Stdout)
	case "dump-sst":
		err = dumpSSTCommand(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "plures: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plures:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  plures demo [-keys N] [-dir DIR]           run the engine end to end on a temporary directory
  plures stats [-json] DIR                   print the levels and files of a database
  plures lsm [-json] [-html FILE] DIR        print every table; -html also draws the tree as a web page
  plures get [-json] DIR KEY                 print a document: value, fields, counters
  plures scan [-json] [-prefix P] [-limit N] DIR
                                             print documents in key order
  plures history [-json] DIR KEY             print the retained operations on a key
  plures feed [-json] [-from SEQ[/IDX]] DIR  print the change feed after a position
  plures dump-wal [-json] FILE.log           print every record of a log segment
  plures dump-sst [-json] FILE.sst           print a table's properties and entries

Every command but demo opens the database read-only (or reads one file).
-json prints one JSON object per line; byte strings carry "hex" (and
"text" when printable).
`)
}
