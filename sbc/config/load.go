package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override: PORTCULLIS_SIP_DOMAIN sets sip.domain,
// PORTCULLIS_CLUSTER_JOIN=a:7000,b:7000 sets cluster.join. Rooms, feeds and sinks cannot be set from the
// environment.
const EnvPrefix = "PORTCULLIS_"

// Load reads the configuration: defaults, then the YAML file at path (none when path is ""), then
// the environment (environ as from os.Environ; nil means none), then validation. It is Check
// without the warnings.
func Load(path string, environ []string) (Config, error) {
	cfg, _, err := Check(path, environ)
	return cfg, err
}

// Check is the one validation that `portcullis check`, `serve` and every other command run: it
// loads like Load and also returns warnings, values that load but are probably wrong (an
// example address or a placeholder password left in place, a misspelt PORTCULLIS_ variable).
func Check(path string, environ []string) (Config, []Warning, error) {
	cfg := Default()
	lines := map[string]int{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, nil, fmt.Errorf("read config: %w", err)
		}
		if lines, err = decode(path, data, &cfg); err != nil {
			return cfg, nil, err
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, nil, err
	}
	if err := cfg.validate(path, lines); err != nil {
		return cfg, nil, err
	}
	warns := envWarnings(environ)
	warns = append(warns, cfg.exampleWarnings(path, lines)...)
	return cfg, warns, nil
}

// decode decodes data strictly into cfg and returns the line of every field path.
func decode(file string, data []byte, cfg *Config) (map[string]int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, locate(file, err, nil)
	}
	lines := map[string]int{}
	var at []valuePos
	if len(root.Content) > 0 {
		collectLines(root.Content[0], "", lines, &at)
		// Values decoded through encoding.TextUnmarshaler (netip.Addr, netip.Prefix) fail inside
		// the decoder with no line: check them here, where the node and its path are known.
		if err := precheck(file, root.Content[0], reflect.TypeOf(cfg).Elem(), ""); err != nil {
			return nil, err
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, locate(file, err, at)
	}
	return lines, nil
}

// valuePos is where a field's value starts in the file.
type valuePos struct {
	path      string
	line, col int
}

// fieldAt names the field whose value is at line (and col, when known: 0 matches any column);
// the deepest such field wins (sip.listen[0] rather than sip.listen).
func fieldAt(at []valuePos, line, col int) string {
	best := ""
	for _, p := range at {
		if p.line == line && (col == 0 || p.col == col) && len(p.path) >= len(best) {
			best = p.path
		}
	}
	return best
}

// locate turns yaml errors into FieldErrors that name the file, line and field.
func locate(file string, err error, at []valuePos) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		fe.File = file
		if fe.Field == "" {
			fe.Field = fieldAt(at, fe.Line, fe.col)
		}
		if fe.Field == "" {
			fe.Field = "value"
		}
		return fe
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// Each entry reads "line N: ...". Keep the first; name the file.
		msg := te.Errors[0]
		line := 0
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			n, after, _ := strings.Cut(rest, ":")
			line, _ = strconv.Atoi(n)
			msg = strings.TrimSpace(after)
		}
		field := "value"
		if strings.HasPrefix(msg, "field ") {
			field = strings.Fields(msg)[1]
			msg = "unknown field (check spelling and nesting; see deploy/portcullis.yaml)"
		} else {
			if f := fieldAt(at, line, 0); f != "" {
				field = f
			}
			// "cannot unmarshal !!str `lots` into int" -> what the field wants.
			if v, into, ok := strings.Cut(msg, " into "); ok && strings.HasPrefix(v, "cannot unmarshal ") {
				val := v[strings.LastIndex(v, " ")+1:]
				msg = fmt.Sprintf("%s is not %s", strings.Trim(val, "`"), kindName(into))
			}
		}
		return &FieldError{File: file, Line: line, Field: field, Msg: msg}
	}
	return fmt.Errorf("%s: %w: %v", file, ErrInvalid, err)
}

// kindName says what a Go type named in a yaml error wants, in an operator's words.
func kindName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map"), strings.HasPrefix(goType, "config."):
		return "a section (key: value lines)"
	}
	return "a " + goType
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// precheck walks the document along the Config type and parses every value that the decoder
// would hand to an encoding.TextUnmarshaler, so that a bad one is reported with its line and
// field. Unknown keys and wrong kinds are left to the decoder.
func precheck(file string, n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" && !reflect.PointerTo(t).Implements(unmarshalerType) &&
		reflect.PointerTo(t).Implements(textUnmarshalerType) {
		v := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := v.UnmarshalText([]byte(n.Value)); err != nil {
			return &FieldError{File: file, Line: n.Line, Field: path, Msg: textError(t, n.Value, err)}
		}
		return nil
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			for j := range t.NumField() {
				if tag, _, _ := strings.Cut(t.Field(j).Tag.Get("yaml"), ","); tag == key {
					if err := precheck(file, n.Content[i+1], t.Field(j).Type, joinPath(path, key)); err != nil {
						return err
					}
				}
			}
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			if err := precheck(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// textError says what is wrong with value s of type t (netip's errors name the Go function).
func textError(t reflect.Type, s string, err error) string {
	switch t {
	case reflect.TypeFor[netip.Addr]():
		return fmt.Sprintf("%q is not an IP address (such as 192.0.2.10 or 2001:db8::10)", s)
	case reflect.TypeFor[netip.Prefix]():
		return fmt.Sprintf("%q is not a CIDR (address/bits, such as 10.0.0.0/8)", s)
	case reflect.TypeFor[netip.AddrPort]():
		return fmt.Sprintf("%q is not IP:PORT", s)
	}
	return fmt.Sprintf("%q: %v", s, err)
}

func collectLines(n *yaml.Node, path string, lines map[string]int, at *[]valuePos) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			lines[p] = k.Line
			*at = append(*at, valuePos{p, v.Line, v.Column})
			collectLines(v, p, lines, at)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = v.Line
			*at = append(*at, valuePos{p, v.Line, v.Column})
			collectLines(v, p, lines, at)
		}
	}
}

// applyEnv sets every scalar (and list) field named by a PORTCULLIS_* variable.
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	return walkEnv(reflect.ValueOf(cfg).Elem(), EnvPrefix[:len(EnvPrefix)-1], env)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func walkEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || tag == "rooms" || tag == "feeds" || tag == "sinks" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) &&
			f.Type.PkgPath() == t.PkgPath() {
			if err := walkEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		val, ok := env[name]
		if !ok {
			continue
		}
		if f.Type.Kind() == reflect.String {
			fv.SetString(val)
			continue
		}
		doc := val
		if f.Type.Kind() == reflect.Slice {
			var items []string
			for s := range strings.SplitSeq(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, strconv.Quote(s))
				}
			}
			doc = "[" + strings.Join(items, ", ") + "]"
		}
		if err := yaml.Unmarshal([]byte(doc), fv.Addr().Interface()); err != nil {
			msg := err.Error()
			var fe *FieldError
			var te *yaml.TypeError
			switch {
			case errors.As(err, &fe):
				msg = fe.Msg
			case errors.As(err, &te):
				msg = fmt.Sprintf("%q is not valid here", val)
			default:
				et := f.Type
				if et.Kind() == reflect.Slice {
					et = et.Elem()
				}
				msg = textError(et, val, err)
			}
			return &FieldError{Field: name, Msg: msg}
		}
	}
	return nil
}
