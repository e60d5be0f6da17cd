//! `as=Table` responses: the request's `includeObject`, and the Table of a get, a list or
//! one watch event. Columns and cells per kind come from [`crate::table`].

use std::time::SystemTime;

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceInfo;

pub use crate::table::IncludeObject;

pub fn include_object(param: Option<&str>) -> Result<IncludeObject, ApiError> {
    IncludeObject::parse(param).map_err(ApiError::bad_request)
}

/// A Table of `items` of `res`. `list_metadata` is the list's metadata (resourceVersion,
/// continue, remainingItemCount); `with_columns` false omits the column definitions (watch
/// events after the first, as kube-apiserver does).
pub fn table(res: &ResourceInfo, items: &[Value], list_metadata: Value, include: IncludeObject, with_columns: bool) -> Value {
    let mut t = crate::table::to_table(&res.group, &res.kind, items, &list_metadata, include, SystemTime::now());
    if !with_columns {
        if let Some(o) = t.as_object_mut() {
            o.remove("columnDefinitions");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use serde_json::json;

    #[test]
    fn pod_rows_have_kube_columns_and_metadata() {
        let reg = Registry::builtin();
        let pods = reg.by_plural("", "pods").unwrap();
        let pod = json!({"kind": "Pod", "metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"x": "y"}},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let t = table(&pods, &[pod], json!({"resourceVersion": "5"}), IncludeObject::Metadata, true);
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
        let t = table(&pods, &[], json!({}), IncludeObject::None, false);
        assert!(t.get("columnDefinitions").is_none());
    }
}
