//! etcd's Cluster service. Changes run on the leader (its replication progress decides
//! whether they are safe); a follower forwards them to the leader's client URL, as etcd
//! forwards them over its peer API. A forwarded request is never forwarded again.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::members;
use super::EtcdServer;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::cluster_server::Cluster;

/// Marks a request a follower forwarded to the leader.
const FORWARDED_HEADER: &str = "skiff-forwarded";

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

/// Where a membership request runs.
enum Route {
    Here,
    Leader(ClusterClient<tonic::transport::Channel>),
}

impl ClusterService {
    fn route<T>(&self, request: &Request<T>) -> Result<Route, Status> {
        let st = self.server.node.status();
        if st.is_leader {
            return Ok(Route::Here);
        }
        if request.metadata().get(FORWARDED_HEADER).is_some() {
            return Err(Error::NotLeader.into());
        }
        Ok(Route::Leader(ClusterClient::new(self.server.leader_channel()?)))
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        // etcd's cluster headers carry no revision.
        self.server.header(0)
    }
}

fn forwarded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    r.set_timeout(std::time::Duration::from_secs(10));
    r
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, r: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let mut client = match self.route(&r)? {
            Route::Here => {
                let req = r.into_inner();
                let (member, members) = members::add(&self.server, req.peer_ur_ls, req.is_learner).await?;
                return Ok(Response::new(pb::MemberAddResponse { header: self.header(), member, members }));
            }
            Route::Leader(c) => c,
        };
        let mut resp = client.member_add(forwarded(r.into_inner())).await?.into_inner();
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        r: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let mut client = match self.route(&r)? {
            Route::Here => {
                let (_, members) = members::remove(&self.server, r.into_inner().id).await?;
                return Ok(Response::new(pb::MemberRemoveResponse { header: self.header(), members }));
            }
            Route::Leader(c) => c,
        };
        let mut resp = client.member_remove(forwarded(r.into_inner())).await?.into_inner();
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn member_update(
        &self,
        r: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let mut client = match self.route(&r)? {
            Route::Here => {
                let req = r.into_inner();
                let (_, members) = members::update(&self.server, req.id, req.peer_ur_ls).await?;
                return Ok(Response::new(pb::MemberUpdateResponse { header: self.header(), members }));
            }
            Route::Leader(c) => c,
        };
        let mut resp = client.member_update(forwarded(r.into_inner())).await?.into_inner();
        resp.header = self.header();
        Ok(Response::new(resp))
    }

    async fn member_list(&self, r: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        if r.into_inner().linearizable {
            self.server.linearizable_barrier().await?;
        }
        let members = self.server.membership.read().to_pb();
        Ok(Response::new(pb::MemberListResponse { header: self.header(), members }))
    }

    async fn member_promote(
        &self,
        r: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let mut client = match self.route(&r)? {
            Route::Here => {
                let (_, members) = members::promote(&self.server, r.into_inner().id).await?;
                return Ok(Response::new(pb::MemberPromoteResponse { header: self.header(), members }));
            }
            Route::Leader(c) => c,
        };
        let mut resp = client.member_promote(forwarded(r.into_inner())).await?.into_inner();
        resp.header = self.header();
        Ok(Response::new(resp))
    }
}
