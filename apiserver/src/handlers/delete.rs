//! DELETE and deletecollection (finalizers, preconditions, namespaces) and the pods'
//! `binding` subresource.

use super::*;

/// The parts of DeleteOptions this server acts on.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

fn delete_options(req: &Request) -> Result<DeleteOptions> {
    let mut o = DeleteOptions { dry_run: req.dry_run()?, ..Default::default() };
    if !req.body.is_empty() {
        let ct = req.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let v: Value = if ct.split(';').next().unwrap_or("").trim() == crate::protobuf::MEDIA_TYPE {
            // client-go's typed clients send DeleteOptions as protobuf.
            crate::protobuf::decode_request(&req.body, "meta.k8s.io/v1", crate::protobuf::DELETE_OPTIONS_KIND)?
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as DeleteOptions: {e}")))?
        };
        o.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.propagation_policy = v.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
        o.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        o.precondition_rv = v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            match d.iter().map(|x| x.as_str().unwrap_or("")).collect::<Vec<_>>().as_slice() {
                [] => {}
                ["All"] => o.dry_run = true,
                _ => return Err(ApiError::bad_request("Invalid dryRun value: only \"All\" is supported")),
            }
        }
    }
    if let Some(g) = req.param("gracePeriodSeconds").filter(|s| !s.is_empty()) {
        o.grace_period_seconds = Some(g.parse().map_err(|_| ApiError::bad_request(format!("gracePeriodSeconds: Invalid value: {g:?}")))?);
    }
    if let Some(p) = req.param("propagationPolicy").filter(|s| !s.is_empty()) {
        o.propagation_policy = Some(p.to_string());
    }
    if let Some(p) = &o.propagation_policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    if o.grace_period_seconds.map(|g| g < 0).unwrap_or(false) {
        o.grace_period_seconds = Some(0);
    }
    Ok(o)
}

/// Deletes one object: immediately when it has no finalizers; otherwise it is marked with
/// `deletionTimestamp` and goes when its finalizers are removed. Namespaces are marked
/// Terminating and handed to the namespace finalizer.
///
/// `propagationPolicy` is accepted and validated, but dependents are not cascaded yet
/// (that is the garbage collector's job, which comes with the controllers). Grace periods
/// are recorded as `deletionGracePeriodSeconds` only on objects kept by finalizers: with no
/// kubelet yet, nothing would ever confirm a graceful pod termination.
pub async fn delete_object(state: &AppState, res: &ResourceInfo, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> Result<(Value, bool)> {
    let key = res.key(namespace, name);
    let is_namespace = res.group.is_empty() && res.plural == "namespaces";
    let is_service = res.group.is_empty() && res.plural == "services";
    for _ in 0..UPDATE_ATTEMPTS_MAX {
        let Some(kv) = state.storage.get(&key).await.map_err(storage_error)? else {
            return Err(ApiError::not_found(res, name));
        };
        let existing = decode_stored(res, &kv)?;
        if let Some(uid) = &opts.precondition_uid {
            let have = objects::meta_str(&existing, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict_with(res, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}")));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            let have = kv.mod_revision.to_string();
            if *rv != have {
                return Err(ApiError::conflict_with(
                    res,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"),
                ));
            }
        }
        let finalizers = objects::finalizers(&existing);
        let spec_finalizers = is_namespace
            && existing.pointer("/spec/finalizers").and_then(Value::as_array).map(|a| !a.is_empty()).unwrap_or(false);
        if !finalizers.is_empty() || spec_finalizers {
            // Mark for deletion; the finalizers' owners (or the namespace finalizer) finish it.
            let mut new = existing.clone();
            let meta = objects::metadata_mut(&mut new);
            if meta.get("deletionTimestamp").map(Value::is_null).unwrap_or(true) {
                meta.insert("deletionTimestamp".into(), json!(objects::now_rfc3339()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(opts.grace_period_seconds.unwrap_or(0)));
            }
            meta.remove("resourceVersion");
            if is_namespace {
                new["status"] = json!({"phase": "Terminating"});
            }
            if opts.dry_run {
                return Ok((new, false));
            }
            if same_ignoring_rv(&existing, &new) {
                return Ok((existing, false));
            }
            match state.storage.update(&key, kv.mod_revision, encode_for_storage(&new), vec![], vec![]).await.map_err(storage_error)? {
                TxnOutcome::Done(rev) => {
                    if is_namespace {
                        // A full queue only delays: the finalizer rescans terminating namespaces.
                        let _ = state.namespace_queue.try_send(name.to_string());
                    }
                    return Ok((with_revision(new, rev), false));
                }
                TxnOutcome::Mismatch(_) => continue,
            }
        }
        if opts.dry_run {
            return Ok((existing, true));
        }
        let releases = if is_service { allocator::release_keys(&existing) } else { Vec::new() };
        match state.storage.delete(&key, kv.mod_revision, releases).await.map_err(storage_error)? {
            TxnOutcome::Done(rev) => {
                if res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions" {
                    crate::bootstrap::unregister_crd(state, &existing);
                    // Its custom resources go with it (kube's CRD finalizer does the same).
                    if let Some(prefix) = crate::bootstrap::crd_key_prefix(&existing) {
                        state.storage.delete_prefix(&prefix).await.map_err(storage_error)?;
                    }
                }
                return Ok((with_revision(existing, rev), true));
            }
            TxnOutcome::Mismatch(_) => continue,
        }
    }
    Err(ApiError::conflict(res, name))
}

pub async fn delete(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.clone().unwrap_or_default();
    let opts = delete_options(req)?;
    let (obj, _gone) = delete_object(state, res, namespace_of(route), &name, &opts).await?;
    Ok(Reply::ok(obj))
}

pub async fn delete_collection(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    if !res.verbs.iter().any(|v| v == "deletecollection") {
        return Err(ApiError::method_not_allowed());
    }
    let opts = delete_options(req)?;
    let filter = Filter::parse(&res.plural, req.param("labelSelector"), req.param("fieldSelector"))?;
    let mut query = req.query.clone();
    query.remove("limit");
    query.remove("continue");
    let listed = list_objects(state, res, namespace_of(route), &filter, &query).await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let ns = objects::meta_str(&obj, "namespace").map(str::to_string);
        match delete_object(state, res, ns.as_deref(), objects::name(&obj), &opts).await {
            Ok((o, _)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": listed.revision.to_string()},
        "items": deleted,
    })))
}

/// POST pods/<name>/binding: assigns the pod to a node (the scheduler's write).
pub async fn bind(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.clone().unwrap_or_default();
    let mut binding = parse_body(req)?;
    let warnings = check_typed(res, "Binding", "v1", &mut binding, req.field_validation()?)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            res,
            &name,
            vec![Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: "target.name".into() }],
        ));
    }
    let dry_run = req.dry_run()?;
    let manager = field_manager(req);
    guaranteed_update(state, res, namespace_of(route), &name, Some("binding"), dry_run, Some(&manager), |existing| {
        if let Some(current) = existing.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Err(ApiError::conflict_with(res, &name, &format!("pod {name} is already assigned to node \"{current}\"")));
        }
        if existing.pointer("/metadata/deletionTimestamp").map(|v| !v.is_null()).unwrap_or(false) {
            return Err(ApiError::conflict_with(res, &name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        let mut new = existing.clone();
        new["spec"]["nodeName"] = json!(node);
        objects::metadata_mut(&mut new).remove("resourceVersion");
        Ok(Transformed::Write(new))
    })
    .await?;
    Ok(Reply { status: StatusCode::CREATED, body: crate::error::success_status(None), warnings })
}
