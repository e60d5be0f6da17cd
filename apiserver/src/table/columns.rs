//! Which printer a kind gets and its column definitions, after kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`, v1.32). The server always prints the wide
//! form: priority-1 columns are included and kubectl hides them unless `-o wide`. The
//! cells of each printer are in [`super::cells`], in the same column order.

use super::ColumnDefinition;

/// `metav1.ObjectMeta` swagger doc of `name` (the Name column's description).
pub const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
/// `metav1.ObjectMeta` swagger doc of `creationTimestamp` (Age / Created At columns).
pub const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const CONTAINERS_DESCRIPTION: &str = "Names of each container in the template.";
const IMAGES_DESCRIPTION: &str = "Images referenced by each container in the template.";

/// Which printer an object gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicationController,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Ingress,
    IngressClass,
    StatefulSet,
    Endpoints,
    EndpointSlice,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    ConfigMap,
    NetworkPolicy,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    ControllerRevision,
    /// kube's `DefaultTableConvertor`: NAME, CREATED AT (RFC 3339). Built-in kinds without
    /// a printer: CRDs, Roles, ClusterRoles, LimitRanges, ….
    CreatedAt,
    /// A custom resource without additional printer columns: NAME, AGE.
    Age,
}

impl Printer {
    pub(crate) fn for_kind(group: &str, kind: &str) -> Printer {
        use Printer::*;
        match (group, kind) {
            ("", "Pod") => Pod,
            ("", "PodTemplate") => PodTemplate,
            ("policy", "PodDisruptionBudget") => PodDisruptionBudget,
            ("", "ReplicationController") => ReplicationController,
            ("apps", "ReplicaSet") => ReplicaSet,
            ("apps", "DaemonSet") => DaemonSet,
            ("batch", "Job") => Job,
            ("batch", "CronJob") => CronJob,
            ("", "Service") => Service,
            ("networking.k8s.io", "Ingress") => Ingress,
            ("networking.k8s.io", "IngressClass") => IngressClass,
            ("apps", "StatefulSet") => StatefulSet,
            ("", "Endpoints") => Endpoints,
            ("discovery.k8s.io", "EndpointSlice") => EndpointSlice,
            ("", "Node") => Node,
            ("", "Event") => Event,
            ("", "Namespace") => Namespace,
            ("", "Secret") => Secret,
            ("", "ServiceAccount") => ServiceAccount,
            ("", "PersistentVolume") => PersistentVolume,
            ("", "PersistentVolumeClaim") => PersistentVolumeClaim,
            ("apps", "Deployment") => Deployment,
            ("", "ConfigMap") => ConfigMap,
            ("networking.k8s.io", "NetworkPolicy") => NetworkPolicy,
            ("rbac.authorization.k8s.io", "RoleBinding") => RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => ClusterRoleBinding,
            ("coordination.k8s.io", "Lease") => Lease,
            ("apps", "ControllerRevision") => ControllerRevision,
            (g, _) if is_builtin_group(g) => CreatedAt,
            _ => Age,
        }
    }
}

/// Groups served by kube-apiserver itself (whose kinds without a printer use the default
/// NAME / CREATED AT table); anything else is a custom resource.
fn is_builtin_group(group: &str) -> bool {
    matches!(
        group,
        "" | "apps"
            | "batch"
            | "autoscaling"
            | "policy"
            | "networking.k8s.io"
            | "discovery.k8s.io"
            | "coordination.k8s.io"
            | "rbac.authorization.k8s.io"
            | "apiextensions.k8s.io"
            | "apiregistration.k8s.io"
            | "storage.k8s.io"
            | "scheduling.k8s.io"
            | "certificates.k8s.io"
            | "admissionregistration.k8s.io"
            | "events.k8s.io"
            | "node.k8s.io"
            | "flowcontrol.apiserver.k8s.io"
    )
}

fn col(name: &str, type_: &str, priority: i32, description: &str) -> ColumnDefinition {
    ColumnDefinition {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: description.into(),
        priority,
    }
}

fn name_col() -> ColumnDefinition {
    ColumnDefinition { format: "name".into(), ..col("Name", "string", 0, NAME_DESCRIPTION) }
}

fn age_col() -> ColumnDefinition {
    col("Age", "string", 0, CREATION_TIMESTAMP_DESCRIPTION)
}

fn template_cols(with_selector: bool) -> Vec<ColumnDefinition> {
    let mut cols = vec![
        col("Containers", "string", 1, CONTAINERS_DESCRIPTION),
        col("Images", "string", 1, IMAGES_DESCRIPTION),
    ];
    if with_selector {
        cols.push(col("Selector", "string", 1, "A label query over pods that should match the replica count."));
    }
    cols
}

pub(crate) fn columns(printer: Printer) -> Vec<ColumnDefinition> {
    use Printer::*;
    let mut cols = vec![name_col()];
    match printer {
        Pod => cols.extend([
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            col("IP", "string", 1, "podIP address allocated to the pod."),
            col("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
            col("Nominated Node", "string", 1, "nominatedNodeName is set when this pod preempts other pods on the node."),
            col("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ]),
        PodTemplate => cols.extend([
            col("Containers", "string", 0, CONTAINERS_DESCRIPTION),
            col("Images", "string", 0, IMAGES_DESCRIPTION),
            col("Pod Labels", "string", 0, "The labels for the pod template."),
        ]),
        PodDisruptionBudget => cols.extend([
            col("Min Available", "string", 0, "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
            age_col(),
        ]),
        ReplicationController | ReplicaSet => {
            cols.extend([
                col("Desired", "integer", 0, "Replicas is the number of desired replicas."),
                col("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
                col("Ready", "integer", 0, "The number of ready replicas for this replica set."),
                age_col(),
            ]);
            cols.extend(template_cols(true));
        }
        DaemonSet => {
            cols.extend([
                col("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
                col("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
                col("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
                col("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod."),
                col("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
                col("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
                age_col(),
            ]);
            cols.extend(template_cols(true));
        }
        Job => {
            cols.extend([
                col("Status", "string", 0, "Status of the job."),
                col("Completions", "string", 0, "The number of pods which reached phase Succeeded."),
                col("Duration", "string", 0, "Time required to complete the job."),
                age_col(),
            ]);
            cols.extend(template_cols(true));
        }
        CronJob => {
            cols.extend([
                col("Schedule", "string", 0, "The schedule in Cron format."),
                col("Timezone", "string", 0, "The time zone name for the given schedule."),
                col("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions."),
                col("Active", "integer", 0, "A list of pointers to currently running jobs."),
                col("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
                age_col(),
            ]);
            cols.extend(template_cols(true));
        }
        Service => cols.extend([
            col("Type", "string", 0, "type determines how the Service is exposed."),
            col("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
            col("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            col("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            age_col(),
            col("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ]),
        Ingress => cols.extend([
            col("Class", "string", 0, "The name of the IngressClass resource that should be used for additional configuration"),
            col("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", 0, "Ports of TLS configurations that open"),
            age_col(),
        ]),
        IngressClass => cols.extend([
            col("Controller", "string", 0, "Controller that is responsible for handling this class"),
            col("Parameters", "string", 0, "A reference to a resource with additional parameters"),
            age_col(),
        ]),
        StatefulSet => {
            cols.extend([col("Ready", "string", 0, "Number of the pod with ready state"), age_col()]);
            cols.extend(template_cols(false));
        }
        Endpoints => cols.extend([
            col("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets."),
            age_col(),
        ]),
        EndpointSlice => cols.extend([
            col("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice."),
            col("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
            col("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
            age_col(),
        ]),
        Node => cols.extend([
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            age_col(),
            col("Version", "string", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", 1, "List of addresses reachable to the node."),
            col("External-IP", "string", 1, "List of addresses reachable to the node."),
            col("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            col("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ]),
        Event => {
            // Events lead with Last Seen; their Name column comes last, at priority 1.
            cols = vec![
                col("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
                col("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
                col("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
                col("Object", "string", 0, "The object that this event is about."),
                col("Subobject", "string", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
                col("Source", "string", 1, "The component reporting this event. Should be a short machine understandable string."),
                col("Message", "string", 0, "A human-readable description of the status of this operation."),
                col("First Seen", "string", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
                col("Count", "string", 1, "The number of times this event has occurred."),
                ColumnDefinition { priority: 1, ..name_col() },
            ];
        }
        Namespace => cols.extend([col("Status", "string", 0, "The status of the namespace"), age_col()]),
        Secret => cols.extend([
            col("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
            col("Data", "string", 0, "Data contains the secret data."),
            age_col(),
        ]),
        ServiceAccount => cols.extend([
            col("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            age_col(),
        ]),
        PersistentVolume => cols.extend([
            col("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
            col("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
            col("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            col("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            col("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            col("StorageClass", "string", 0, "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
            col("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure."),
            age_col(),
            col("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ]),
        PersistentVolumeClaim => cols.extend([
            col("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", "string", 0, "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
            age_col(),
            col("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
        ]),
        Deployment => {
            cols.extend([
                col("Ready", "string", 0, "Number of the pod with ready state"),
                col("Up-to-date", "string", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                col("Available", "string", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                age_col(),
            ]);
            cols.extend(template_cols(true));
        }
        ConfigMap => cols.extend([
            col("Data", "string", 0, "Data contains the configuration data."),
            age_col(),
        ]),
        NetworkPolicy => cols.extend([
            col("Pod-Selector", "string", 0, "podSelector selects the pods to which this NetworkPolicy object applies."),
            age_col(),
        ]),
        RoleBinding | ClusterRoleBinding => {
            let what = if printer == RoleBinding { "roleBinding" } else { "clusterRoleBinding" };
            cols.extend([
                col("Role", "string", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
                age_col(),
                col("Users", "string", 1, &format!("Users in the {what}")),
                col("Groups", "string", 1, &format!("Groups in the {what}")),
                col("ServiceAccounts", "string", 1, &format!("ServiceAccounts in the {what}")),
            ]);
        }
        Lease => cols.extend([
            col("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."),
            age_col(),
        ]),
        ControllerRevision => cols.extend([
            col("Controller", "string", 0, "Controller of the object"),
            col("Revision", "string", 0, "Revision indicates the revision of the state represented by Data."),
            age_col(),
        ]),
        CreatedAt => cols.push(col("Created At", "date", 0, CREATION_TIMESTAMP_DESCRIPTION)),
        Age => cols.push(col("Age", "date", 0, CREATION_TIMESTAMP_DESCRIPTION)),
    }
    cols
}
