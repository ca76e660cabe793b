// Package config is the Portcullis configuration: the YAML schema, its documented defaults, strict
// decoding (an unknown key or a bad value is an error naming the line and the field), cross-field
// validation, and PORTCULLIS_* environment overrides.
//
// Load order: defaults, then the file (if any), then the environment, then validation.
package config
