package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/portcullis-sbc/portcullis/sbc/config"
)

// The subset of the Kubernetes API the tests read. Unknown fields are ignored: the point is to
// pin the fields that matter, not to re-validate the whole schema.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Resources  []string          `yaml:"resources"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type probe struct {
	Exec struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom struct {
		FieldRef struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type containerSpec struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	Args            []string `yaml:"args"`
	Env             []envVar `yaml:"env"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type statefulSetSpec struct {
	ServiceName         string        `yaml:"serviceName"`
	Replicas            int           `yaml:"replicas"`
	PodManagementPolicy string        `yaml:"podManagementPolicy"`
	Selector            labelSelector `yaml:"selector"`
	Template            struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			HostNetwork                   bool   `yaml:"hostNetwork"`
			DNSPolicy                     string `yaml:"dnsPolicy"`
			TerminationGracePeriodSeconds int    `yaml:"terminationGracePeriodSeconds"`
			Affinity                      struct {
				PodAntiAffinity struct {
					Required []struct {
						TopologyKey   string        `yaml:"topologyKey"`
						LabelSelector labelSelector `yaml:"labelSelector"`
					} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
				} `yaml:"podAntiAffinity"`
			} `yaml:"affinity"`
			SecurityContext struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				RunAsUser    int   `yaml:"runAsUser"`
				RunAsGroup   int   `yaml:"runAsGroup"`
				FSGroup      int   `yaml:"fsGroup"`
			} `yaml:"securityContext"`
			Containers []containerSpec `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name string `yaml:"name"`
				} `yaml:"configMap"`
				Secret *struct {
					SecretName string `yaml:"secretName"`
				} `yaml:"secret"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			AccessModes []string `yaml:"accessModes"`
			Resources   struct {
				Requests map[string]string `yaml:"requests"`
			} `yaml:"resources"`
		} `yaml:"spec"`
	} `yaml:"volumeClaimTemplates"`
}

type serviceSpec struct {
	ClusterIP                string            `yaml:"clusterIP"`
	PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
	Selector                 map[string]string `yaml:"selector"`
	Ports                    []struct {
		Port     int    `yaml:"port"`
		Protocol string `yaml:"protocol"`
	} `yaml:"ports"`
}

type pdbSpec struct {
	MinAvailable   *int          `yaml:"minAvailable"`
	MaxUnavailable *int          `yaml:"maxUnavailable"`
	Selector       labelSelector `yaml:"selector"`
}

// loadManifests parses every YAML document of deploy/kubernetes, keyed by kind (one of each).
func loadManifests(t *testing.T) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	objs := map[string]k8sObject{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			if _, dup := objs[o.Kind]; dup {
				t.Fatalf("%s: a second %s", f, o.Kind)
			}
			objs[o.Kind] = o
		}
	}
	return objs
}

func decodeSpec[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

// TestKubernetesManifests parses deploy/kubernetes and checks what a working 3-node cluster needs.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	for _, kind := range []string{"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Secret", "Kustomization"} {
		if _, ok := objs[kind]; !ok {
			t.Fatalf("no %s in deploy/kubernetes", kind)
		}
	}
	ss := decodeSpec[statefulSetSpec](t, objs["StatefulSet"])
	svcObj := objs["Service"]
	svc := decodeSpec[serviceSpec](t, svcObj)
	pdb := decodeSpec[pdbSpec](t, objs["PodDisruptionBudget"])
	pod := ss.Template.Spec

	t.Run("apiVersions", func(t *testing.T) {
		want := map[string]string{"StatefulSet": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1",
			"ConfigMap": "v1", "Secret": "v1"}
		for kind, v := range want {
			if got := objs[kind].APIVersion; got != v {
				t.Errorf("%s apiVersion %q, want %q", kind, got, v)
			}
		}
	})
	t.Run("statefulset", func(t *testing.T) {
		if ss.Replicas != 3 {
			t.Errorf("replicas %d, want 3", ss.Replicas)
		}
		if ss.ServiceName != svcObj.Metadata.Name {
			t.Errorf("serviceName %q, want the headless service %q", ss.ServiceName, svcObj.Metadata.Name)
		}
		if ss.PodManagementPolicy != "Parallel" {
			t.Errorf("podManagementPolicy %q: Parallel, or a full restart deadlocks (pod 0 cannot be ready alone)", ss.PodManagementPolicy)
		}
		if !reflect.DeepEqual(ss.Selector.MatchLabels, ss.Template.Metadata.Labels) {
			t.Errorf("selector %v does not match the pod labels %v", ss.Selector.MatchLabels, ss.Template.Metadata.Labels)
		}
		if pod.TerminationGracePeriodSeconds <= 30 {
			t.Errorf("terminationGracePeriodSeconds %d: must exceed the 30s drain", pod.TerminationGracePeriodSeconds)
		}
		if len(ss.VolumeClaimTemplates) != 1 || ss.VolumeClaimTemplates[0].Metadata.Name != "data" ||
			!slices.Equal(ss.VolumeClaimTemplates[0].Spec.AccessModes, []string{"ReadWriteOnce"}) ||
			ss.VolumeClaimTemplates[0].Spec.Resources.Requests["storage"] == "" {
			t.Errorf("volumeClaimTemplates %+v: want one ReadWriteOnce claim named data with a size", ss.VolumeClaimTemplates)
		}
	})
	t.Run("media ports", func(t *testing.T) {
		// hostNetwork (the documented choice) needs the cluster DNS still, and one pod per node.
		if !pod.HostNetwork {
			t.Skip("hostNetwork off: the alternative in README.md applies")
		}
		if pod.DNSPolicy != "ClusterFirstWithHostNet" {
			t.Errorf("dnsPolicy %q: with hostNetwork, ClusterFirstWithHostNet or the pods cannot resolve each other", pod.DNSPolicy)
		}
		aa := pod.Affinity.PodAntiAffinity.Required
		if len(aa) != 1 || aa[0].TopologyKey != "kubernetes.io/hostname" ||
			!reflect.DeepEqual(aa[0].LabelSelector.MatchLabels, ss.Selector.MatchLabels) {
			t.Errorf("required pod anti-affinity on kubernetes.io/hostname missing: two pods on one node would share its ports (%+v)", aa)
		}
	})
	t.Run("non-root", func(t *testing.T) {
		sc := pod.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser != 65532 || sc.RunAsGroup != 65532 || sc.FSGroup != 65532 {
			t.Errorf("pod securityContext %+v: want runAsNonRoot, UID/GID/fsGroup 65532", sc)
		}
		for _, c := range pod.Containers {
			csc := c.SecurityContext
			if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || !csc.ReadOnlyRootFilesystem ||
				!slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) || len(csc.Capabilities.Add) > 0 {
				t.Errorf("container %s securityContext %+v", c.Name, csc)
			}
		}
	})
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	t.Run("probes", func(t *testing.T) {
		for name, p := range map[string]*probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || len(p.Exec.Command) < 2 || p.Exec.Command[1] != "health" {
				t.Errorf("%s probe %+v: want exec portcullis health", name, p)
			}
		}
		if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 60 {
			t.Errorf("startup probe allows %ds: joining the cluster needs up to a minute", p.PeriodSeconds*p.FailureThreshold)
		}
	})
	t.Run("volumes", func(t *testing.T) {
		declared := map[string]bool{"data": true}
		for _, v := range pod.Volumes {
			declared[v.Name] = true
			if v.ConfigMap != nil && v.ConfigMap.Name != objs["ConfigMap"].Metadata.Name {
				t.Errorf("volume %s: configMap %q does not exist", v.Name, v.ConfigMap.Name)
			}
			if v.Secret != nil && v.Secret.SecretName != objs["Secret"].Metadata.Name {
				t.Errorf("volume %s: secret %q does not exist", v.Name, v.Secret.SecretName)
			}
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			if !declared[m.Name] {
				t.Errorf("mount %s: no such volume", m.Name)
			}
			mounts[m.MountPath] = m.Name
		}
		if mounts["/data"] != "data" {
			t.Errorf("/data is not the data claim: mounts %v", mounts)
		}
	})
	t.Run("headless service", func(t *testing.T) {
		if svc.ClusterIP != "None" {
			t.Errorf("clusterIP %q, want None (headless)", svc.ClusterIP)
		}
		if !svc.PublishNotReadyAddresses {
			t.Error("publishNotReadyAddresses: the nodes must resolve each other before they are ready")
		}
		if !reflect.DeepEqual(svc.Selector, ss.Selector.MatchLabels) {
			t.Errorf("service selector %v, pods %v", svc.Selector, ss.Selector.MatchLabels)
		}
		if !slices.ContainsFunc(svc.Ports, func(p struct {
			Port     int    `yaml:"port"`
			Protocol string `yaml:"protocol"`
		}) bool {
			return p.Port == 7000
		}) {
			t.Errorf("no cluster port 7000 in %+v", svc.Ports)
		}
	})
	t.Run("disruption budget", func(t *testing.T) {
		if pdb.MinAvailable == nil || *pdb.MinAvailable != 2 || pdb.MaxUnavailable != nil {
			t.Errorf("minAvailable %s maxUnavailable %s: want minAvailable 2 (a Raft majority of 3)", intOrUnset(pdb.MinAvailable), intOrUnset(pdb.MaxUnavailable))
		}
		if !reflect.DeepEqual(pdb.Selector.MatchLabels, ss.Selector.MatchLabels) {
			t.Errorf("PDB selector %v, pods %v", pdb.Selector.MatchLabels, ss.Selector.MatchLabels)
		}
	})
	t.Run("secret", func(t *testing.T) {
		sec := objs["Secret"]
		for _, e := range c.Env {
			if ref := e.ValueFrom.SecretKeyRef; ref.Name != "" {
				if ref.Name != sec.Metadata.Name {
					t.Errorf("env %s: secret %q does not exist", e.Name, ref.Name)
				} else if _, ok := sec.StringData[ref.Key]; !ok {
					t.Errorf("env %s: secret key %q missing", e.Name, ref.Key)
				}
			}
		}
	})
	t.Run("kustomization", func(t *testing.T) {
		files, _ := filepath.Glob("kubernetes/*.yaml")
		for _, f := range files {
			if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(objs["Kustomization"].Resources, base) {
				t.Errorf("kustomization.yaml does not list %s", base)
			}
		}
	})
	t.Run("per-pod configs", func(t *testing.T) { testPodConfigs(t, objs, ss) })
}

func intOrUnset(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}

// testPodConfigs loads each pod's config file (from the ConfigMap) with the pod's environment, as
// `portcullis serve` would: all must validate, differ only in cluster.join, portcullis-0 must
// bootstrap and the others join it, and the certificate paths must be keys of the Secret.
func testPodConfigs(t *testing.T, objs map[string]k8sObject, ss statefulSetSpec) {
	c := ss.Template.Spec.Containers[0]
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || !strings.Contains(c.Args[i+1], "$(POD_NAME)") {
		t.Fatalf("args %v: want --config .../$(POD_NAME).yaml", c.Args)
	}
	pathTmpl := c.Args[i+1]
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	secretDir := ""
	for _, v := range ss.Template.Spec.Volumes {
		if v.Secret != nil {
			secretDir = mounts[v.Name]
		}
	}
	cm := objs["ConfigMap"]
	var first config.Config
	for ord := range ss.Replicas {
		podName := ss.ServiceName + "-" + string(rune('0'+ord))
		file := filepath.Base(strings.ReplaceAll(pathTmpl, "$(POD_NAME)", podName))
		data, ok := cm.Data[file]
		if !ok {
			t.Fatalf("ConfigMap has no %s (pod %s)", file, podName)
		}
		// The pod's environment, with Kubernetes' $(VAR) expansion of earlier variables.
		vars := map[string]string{}
		var env []string
		defined := map[string]bool{}
		for _, e := range c.Env {
			v := e.Value
			if e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
				v = podName
			}
			if e.ValueFrom.SecretKeyRef.Key != "" {
				v = "secret-" + e.ValueFrom.SecretKeyRef.Key
			}
			for k, val := range vars {
				v = strings.ReplaceAll(v, "$("+k+")", val)
			}
			if strings.Contains(v, "$(") {
				t.Errorf("env %s=%q refers to a variable not defined before it", e.Name, e.Value)
			}
			vars[e.Name] = v
			defined[e.Name] = true
			env = append(env, e.Name+"="+v)
		}
		if !defined["POD_NAME"] {
			t.Fatal("POD_NAME is not in the environment: args cannot name the pod's config")
		}
		path := filepath.Join(t.TempDir(), file)
		mustWrite(t, path, []byte(data), 0o644)
		cfg, err := config.Load(path, env)
		if err != nil {
			t.Fatalf("pod %s: %v", podName, err)
		}
		if cfg.Node.ID != podName || cfg.Cluster.Advertise != podName+"."+ss.ServiceName+":7000" {
			t.Errorf("pod %s: node id %q advertise %q", podName, cfg.Node.ID, cfg.Cluster.Advertise)
		}
		if cfg.Node.DataDir != "/data" {
			t.Errorf("pod %s: data_dir %q, want the volume /data", podName, cfg.Node.DataDir)
		}
		for _, p := range []string{cfg.Cluster.CA, cfg.Cluster.Cert, cfg.Cluster.Key} {
			dir, key := filepath.Split(p)
			if filepath.Clean(dir) != secretDir {
				t.Errorf("pod %s: cluster certificate %q is not in the secret mount %s", podName, p, secretDir)
			} else if _, ok := objs["Secret"].StringData[key]; !ok {
				t.Errorf("pod %s: cluster certificate %q: no key %q in the Secret", podName, p, key)
			}
		}
		udp5060 := false
		for _, l := range cfg.SIP.Listen {
			udp5060 = udp5060 || l.Transport == "udp" && l.Addr.Port() == 5060
		}
		if !udp5060 {
			t.Errorf("pod %s: no udp listener on 5060, which the probes (`portcullis health`, no --config) ask", podName)
		}
		switch ord {
		case 0:
			if len(cfg.Cluster.Join) != 0 {
				t.Errorf("%s joins %v: the first pod must bootstrap", podName, cfg.Cluster.Join)
			}
			first = cfg
		default:
			if want := []string{ss.ServiceName + "-0." + ss.ServiceName + ":7000"}; !slices.Equal(cfg.Cluster.Join, want) {
				t.Errorf("%s joins %v, want %v", podName, cfg.Cluster.Join, want)
			}
			a, b := first, cfg
			a.Cluster.Join, b.Cluster.Join = nil, nil
			a.Node.ID, b.Node.ID = "", ""
			a.Cluster.Advertise, b.Cluster.Advertise = "", ""
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s's config differs from %s-0's beyond cluster.join", podName, ss.ServiceName)
			}
		}
	}
}
