//! ruleop: a generic Kubernetes operator driven by YAML rule files.
