// Stand-in for vbom.ml/util, a module of k8s.io/kubectl v0.19.1's graph whose domain no longer
// serves it (the proxy refuses it). No package of it is compiled into the provider: only its go.mod
// is read while the module graph is loaded.
module vbom.ml/util
