//! etcd's Cluster service. A single member lists itself; membership changes arrive with
//! the multi-member issue and are refused as unimplemented until then.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::EtcdServer;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use pb::cluster_server::Cluster;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

impl ClusterService {
    fn members(&self) -> Vec<pb::Member> {
        let c = &self.server.config;
        vec![pb::Member {
            id: c.member_id,
            name: c.name.clone(),
            peer_ur_ls: c.advertise_peer_urls.clone(),
            client_ur_ls: c.advertise_client_urls.clone(),
            is_learner: false,
        }]
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _r: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(Error::Unimplemented("Cluster.MemberAdd (multi-member clusters)").into())
    }

    async fn member_remove(
        &self,
        _r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(Error::Unimplemented("Cluster.MemberRemove (multi-member clusters)").into())
    }

    async fn member_update(
        &self,
        _r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Error::Unimplemented("Cluster.MemberUpdate (multi-member clusters)").into())
    }

    async fn member_list(&self, r: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        if r.into_inner().linearizable {
            self.server.linearizable_barrier().await?;
        }
        Ok(Response::new(pb::MemberListResponse {
            // etcd's cluster headers carry no revision.
            header: self.server.header(0),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _r: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(Error::Unimplemented("Cluster.MemberPromote (multi-member clusters)").into())
    }
}
