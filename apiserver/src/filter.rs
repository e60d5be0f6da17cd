//! List and watch filtering by `labelSelector` and `fieldSelector`: the request's selectors
//! parsed once (with [`crate::selectors`]) and matched against each object.

use serde_json::Value;

use crate::error::ApiError;
use crate::selectors::{FieldSelector, LabelSelector};

#[derive(Debug, Clone, Default)]
pub struct Filter {
    label: Option<LabelSelector>,
    field: Option<FieldSelector>,
    /// The resource plural (field selectors are per resource).
    resource: String,
}

impl Filter {
    /// Parses the selectors of a request on `resource` (plural). Syntax errors and fields
    /// the resource does not support are 400 BadRequest with kube's text.
    pub fn parse(resource: &str, label_selector: Option<&str>, field_selector: Option<&str>) -> Result<Filter, ApiError> {
        let mut f = Filter { resource: resource.to_string(), ..Default::default() };
        if let Some(ls) = label_selector.filter(|s| !s.trim().is_empty()) {
            let sel = LabelSelector::parse(ls).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !sel.is_everything() {
                f.label = Some(sel);
            }
        }
        if let Some(fs) = field_selector.filter(|s| !s.trim().is_empty()) {
            let sel = FieldSelector::parse(fs).map_err(|e| ApiError::bad_request(e.to_string()))?;
            sel.check_supported(resource).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !sel.is_everything() {
                f.field = Some(sel);
            }
        }
        Ok(f)
    }

    /// Adds `metadata.name=<name>` (a watch of one named object).
    pub fn with_name(mut self, name: &str) -> Filter {
        let by_name = FieldSelector::equals("metadata.name", name);
        self.field = Some(match self.field.take() {
            None => by_name,
            Some(existing) => {
                let text = format!("{existing},{by_name}");
                FieldSelector::parse(&text).unwrap_or(by_name)
            }
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.label {
            if !l.matches_object(obj) {
                return false;
            }
        }
        match &self.field {
            Some(f) => f.matches(obj, &self.resource).unwrap_or(false),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors() {
        let pod = json!({"metadata": {"name": "a", "namespace": "d", "labels": {"app": "web", "tier": "fe"}}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let f = Filter::parse("pods", Some("app=web,tier in (fe,be)"), Some("spec.nodeName=n1")).unwrap();
        assert!(f.matches(&pod));
        assert!(!Filter::parse("pods", Some("app!=web"), None).unwrap().matches(&pod));
        assert!(!Filter::parse("pods", None, Some("status.phase=Pending")).unwrap().matches(&pod));
        assert_eq!(Filter::parse("configmaps", None, Some("spec.nodeName=n1")).unwrap_err().message, "field label not supported: spec.nodeName");
        assert_eq!(Filter::parse("pods", Some("a in ("), None).unwrap_err().code, 400);
        assert!(Filter::default().with_name("a").matches(&pod));
        assert!(!Filter::parse("pods", None, Some("metadata.namespace=x")).unwrap().with_name("a").matches(&pod));
    }
}
