//! The Auth service: part of etcd's API, not served yet. Every RPC
//! answers `Unimplemented` with the RPC's name, never a silent success, so a client knows
//! exactly what is missing.

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::etcdserverpb as pb;

fn unimplemented(rpc: &'static str) -> Status {
    Error::Unimplemented(rpc).into()
}

pub struct AuthService;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn auth_enable(&self, _r: Request<pb::AuthEnableRequest>) -> Result<Response<pb::AuthEnableResponse>, Status> {
        Err(unimplemented("Auth.AuthEnable"))
    }

    async fn auth_disable(&self, _r: Request<pb::AuthDisableRequest>) -> Result<Response<pb::AuthDisableResponse>, Status> {
        Err(unimplemented("Auth.AuthDisable"))
    }

    async fn auth_status(&self, _r: Request<pb::AuthStatusRequest>) -> Result<Response<pb::AuthStatusResponse>, Status> {
        Err(unimplemented("Auth.AuthStatus"))
    }

    async fn authenticate(&self, _r: Request<pb::AuthenticateRequest>) -> Result<Response<pb::AuthenticateResponse>, Status> {
        Err(unimplemented("Auth.Authenticate"))
    }

    async fn user_add(&self, _r: Request<pb::AuthUserAddRequest>) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        Err(unimplemented("Auth.UserAdd"))
    }

    async fn user_get(&self, _r: Request<pb::AuthUserGetRequest>) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        Err(unimplemented("Auth.UserGet"))
    }

    async fn user_list(&self, _r: Request<pb::AuthUserListRequest>) -> Result<Response<pb::AuthUserListResponse>, Status> {
        Err(unimplemented("Auth.UserList"))
    }

    async fn user_delete(&self, _r: Request<pb::AuthUserDeleteRequest>) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        Err(unimplemented("Auth.UserDelete"))
    }

    async fn user_change_password(&self, _r: Request<pb::AuthUserChangePasswordRequest>) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        Err(unimplemented("Auth.UserChangePassword"))
    }

    async fn user_grant_role(&self, _r: Request<pb::AuthUserGrantRoleRequest>) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        Err(unimplemented("Auth.UserGrantRole"))
    }

    async fn user_revoke_role(&self, _r: Request<pb::AuthUserRevokeRoleRequest>) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        Err(unimplemented("Auth.UserRevokeRole"))
    }

    async fn role_add(&self, _r: Request<pb::AuthRoleAddRequest>) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        Err(unimplemented("Auth.RoleAdd"))
    }

    async fn role_get(&self, _r: Request<pb::AuthRoleGetRequest>) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        Err(unimplemented("Auth.RoleGet"))
    }

    async fn role_list(&self, _r: Request<pb::AuthRoleListRequest>) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        Err(unimplemented("Auth.RoleList"))
    }

    async fn role_delete(&self, _r: Request<pb::AuthRoleDeleteRequest>) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        Err(unimplemented("Auth.RoleDelete"))
    }

    async fn role_grant_permission(&self, _r: Request<pb::AuthRoleGrantPermissionRequest>) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        Err(unimplemented("Auth.RoleGrantPermission"))
    }

    async fn role_revoke_permission(&self, _r: Request<pb::AuthRoleRevokePermissionRequest>) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        Err(unimplemented("Auth.RoleRevokePermission"))
    }
}

