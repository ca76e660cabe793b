package deploy

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoBuildHasItsOwnTimeLimit: no test bounds a `go build`, `docker build` or `compose build`
// with a wall-clock limit of its own (context.WithTimeout, time.After): a cold -race run on the
// 2-core machine compiles every package at once and such a limit killed TestDocker's image build
// (issue #17.1). Builds run until the test binary's own deadline (t.Deadline, go test -timeout).
func TestNoBuildHasItsOwnTimeLimit(t *testing.T) {
	root := repoRoot(t)
	fset := gotoken.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "vendor" || e.Name() == "testdata") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			builds, limits := false, []gotoken.Pos{}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "context" && sel.Sel.Name == "WithTimeout" ||
						x.Name == "time" && sel.Sel.Name == "After") {
						limits = append(limits, call.Pos())
					}
				}
				if !runsCommand(call) {
					return true
				}
				for _, a := range call.Args {
					if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
						if v, _ := strconv.Unquote(lit.Value); v == "build" {
							builds = true
						}
					}
				}
				return true
			})
			if builds {
				checked++
				for _, pos := range limits {
					t.Errorf("%s: %s runs a build under its own wall-clock limit; use the test's deadline (testContext) or none",
						fset.Position(pos), fn.Name.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 2 { // buildImage here, buildBinary in cmd/portcullis
		t.Fatalf("found only %d test functions that build: the check no longer sees them", checked)
	}
}

// runsCommand reports whether call starts a process: exec.Command(Context) or the docker
// helpers' run and must.
func runsCommand(call *ast.CallExpr) bool {
	name := ""
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		name = f.Sel.Name
	case *ast.Ident:
		name = f.Name
	}
	switch name {
	case "Command", "CommandContext", "run", "must", "quiet":
		return true
	}
	return false
}
