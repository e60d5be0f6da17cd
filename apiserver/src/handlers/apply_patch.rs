//! Server-side apply (PATCH `application/apply-patch+yaml`): the request checks, then
//! [`crate::apply::apply`] onto the stored object (or onto nothing: apply creates), written
//! through the same create and guaranteed-update paths as every other write.
//!
//! Every other write records its field manager as an `Update` entry (see
//! `guaranteed_update` and `create`), so an apply conflicts with fields that, say,
//! `kubectl scale` set, as on kube-apiserver.

use std::time::SystemTime;

use super::*;

fn apply_error(res: &ResourceInfo, name: &str, e: crate::apply::ApplyError) -> ApiError {
    ApiError::from_status(&crate::apply::conflict_status(&res.group, &res.kind, name, &e))
}

pub async fn server_side_apply(state: &AppState, req: &Request) -> Result<Reply> {
    let route = &req.route;
    let res = &route.resource;
    let name = route.name.clone().unwrap_or_default();
    if route.subresource.is_some() {
        return Err(ApiError::not_implemented("server-side apply to a subresource"));
    }
    let manager = req.param("fieldManager").map(str::to_string);
    let force_param = req.param("force");
    let force = matches!(force_param, Some("true") | Some("1"));
    crate::apply::validate_patch_options(true, manager.as_deref(), force_param.is_some()).map_err(|e| apply_error(res, &name, e))?;
    let manager = manager.unwrap_or_default();
    let mut config = crate::apply::parse_apply_body(&req.body).map_err(ApiError::bad_request)?;
    crate::apply::validate_apply_body(&config, &res.api_version(), &res.kind, &name).map_err(|e| apply_error(res, &name, e))?;
    let warnings = check_typed(res, &res.kind, &res.api_version(), &mut config, req.field_validation()?)?;
    let dry_run = req.dry_run()?;
    let namespace = namespace_of(route);
    let now = SystemTime::now();

    let exists = state.storage.get(&res.key(namespace, &name)).await.map_err(storage_error)?.is_some();
    if !exists {
        let mut obj = crate::apply::apply(None, &config, &manager, force, &res.group, &res.kind, now)
            .map_err(|e| apply_error(res, &name, e))?;
        let managed = obj.pointer("/metadata/managedFields").cloned();
        prepare_create(res, namespace, &mut obj)?;
        if let Some(m) = managed {
            objects::metadata_mut(&mut obj).insert("managedFields".into(), m);
        }
        validate_meta(res, &obj)?;
        if let Some(ns) = namespace {
            check_namespace(state, res, ns, &name).await?;
        }
        let stored = create_object(state, res, namespace, obj, dry_run).await?;
        return Ok(Reply { status: StatusCode::CREATED, body: stored, warnings });
    }
    let stored = guaranteed_update(state, res, namespace, &name, None, dry_run, None, |existing| {
        let mut new = crate::apply::apply(Some(existing), &config, &manager, force, &res.group, &res.kind, now)
            .map_err(|e| apply_error(res, &name, e))?;
        // The configuration's resourceVersion, if any, is a precondition; else none.
        match config.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            Some(rv) if !rv.is_empty() => {
                objects::metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
            }
            _ => {
                objects::metadata_mut(&mut new).remove("resourceVersion");
            }
        }
        Ok(Transformed::Write(new))
    })
    .await?;
    Ok(Reply { status: StatusCode::OK, body: stored, warnings })
}
