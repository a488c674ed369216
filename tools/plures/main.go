// Command plures inspects PluresDB databases and shows the engine at work.
//
//	plures demo [-keys N] [-dir DIR]   a tour of the engine on a temporary directory
//	plures stats DIR                   levels, files and counters of a database
//	plures lsm [-html FILE] DIR        every table of the tree, optionally drawn as HTML
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
		err = stats(os.Args[2:])
	case "lsm":
		err = lsmCommand(os.Args[2:], os.Stdout)
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
  plures demo [-keys N] [-dir DIR]   run the engine end to end on a temporary directory
  plures stats DIR                   print the levels and files of a database
  plures lsm [-html FILE] DIR        print every table; -html also draws the tree as a web page
`)
}
