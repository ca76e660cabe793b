package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override: PORTCULLIS_SIP_DOMAIN sets sip.domain,
// PORTCULLIS_CLUSTER_JOIN=a:7000,b:7000 sets cluster.join. Rooms cannot be set from the environment.
const EnvPrefix = "PORTCULLIS_"

// Load reads the configuration: defaults, then the YAML file at path (none when path is ""), then
// the environment (environ as from os.Environ; nil means none), then validation.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	lines := map[string]int{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if lines, err = decode(path, data, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	if err := cfg.validate(path, lines); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decode decodes data strictly into cfg and returns the line of every field path.
func decode(file string, data []byte, cfg *Config) (map[string]int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, locate(file, err)
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		collectLines(root.Content[0], "", lines)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, locate(file, err)
	}
	return lines, nil
}

// locate turns yaml errors into FieldErrors that name the file and line.
func locate(file string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		fe.File = file
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
		}
		return &FieldError{File: file, Line: line, Field: field, Msg: msg}
	}
	return fmt.Errorf("%s: %w: %v", file, ErrInvalid, err)
}

func collectLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			lines[p] = k.Line
			collectLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = v.Line
			collectLines(v, p, lines)
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
		if tag == "" || tag == "-" || tag == "rooms" || tag == "feeds" {
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
			if errors.As(err, &fe) {
				msg = fe.Msg
			}
			return &FieldError{Field: name, Msg: msg}
		}
	}
	return nil
}
