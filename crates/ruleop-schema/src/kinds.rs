//! Built-in kinds known without asking a cluster: which are cluster-scoped (from k8s-openapi).

use k8s_openapi::api::{
    admissionregistration, apiserverinternal, certificates, core, flowcontrol, networking, node,
    rbac, resource, scheduling, storage, storagemigration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use k8s_openapi::{ClusterResourceScope, Resource};

/// `(group, kind)` of a cluster-scoped built-in kind; only compiles for one.
const fn cluster<K: Resource<Scope = ClusterResourceScope>>() -> (&'static str, &'static str) {
    (K::GROUP, K::KIND)
}

/// The cluster-scoped built-in kinds that are stored objects (reviews are left out).
/// Every other built-in kind is namespaced.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    cluster::<core::v1::Namespace>(),
    cluster::<core::v1::Node>(),
    cluster::<core::v1::PersistentVolume>(),
    cluster::<core::v1::ComponentStatus>(),
    cluster::<rbac::v1::ClusterRole>(),
    cluster::<rbac::v1::ClusterRoleBinding>(),
    cluster::<storage::v1::StorageClass>(),
    cluster::<storage::v1::CSIDriver>(),
    cluster::<storage::v1::CSINode>(),
    cluster::<storage::v1::VolumeAttachment>(),
    cluster::<storage::v1::VolumeAttributesClass>(),
    cluster::<scheduling::v1::PriorityClass>(),
    cluster::<node::v1::RuntimeClass>(),
    cluster::<networking::v1::IngressClass>(),
    cluster::<networking::v1::IPAddress>(),
    cluster::<networking::v1::ServiceCIDR>(),
    cluster::<certificates::v1::CertificateSigningRequest>(),
    cluster::<certificates::v1beta1::ClusterTrustBundle>(),
    cluster::<flowcontrol::v1::FlowSchema>(),
    cluster::<flowcontrol::v1::PriorityLevelConfiguration>(),
    cluster::<admissionregistration::v1::MutatingWebhookConfiguration>(),
    cluster::<admissionregistration::v1::ValidatingWebhookConfiguration>(),
    cluster::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
    cluster::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
    cluster::<admissionregistration::v1::MutatingAdmissionPolicy>(),
    cluster::<admissionregistration::v1::MutatingAdmissionPolicyBinding>(),
    cluster::<resource::v1::DeviceClass>(),
    cluster::<resource::v1::ResourceSlice>(),
    cluster::<resource::v1beta2::DeviceTaintRule>(),
    cluster::<apiserverinternal::v1alpha1::StorageVersion>(),
    cluster::<storagemigration::v1beta1::StorageVersionMigration>(),
    cluster::<CustomResourceDefinition>(),
    cluster::<APIService>(),
];

/// Whether `group`/`kind` is a built-in cluster-scoped kind.
pub fn builtin_cluster_scoped(group: &str, kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&(group, kind))
}
