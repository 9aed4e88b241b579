//! The embedded S3-compatible engine (`s3s-fs` over a folder), served on loopback so that the
//! production S3 adapter, presigned URLs included, runs unchanged. It checks SigV4 signatures
//! and presigned-URL expiry, so the download flow is tested for real.

use std::net::SocketAddr;
use std::path::Path;

use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::sync::oneshot;

use crate::{LOCAL_ACCESS_KEY, LOCAL_REGION, LOCAL_SECRET_KEY};

pub struct LocalS3 {
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for LocalS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalS3")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl LocalS3 {
    /// Serves the folder `root` as an S3 endpoint at `addr` (port 0 picks a free one).
    pub async fn start(root: &Path, addr: SocketAddr) -> Result<Self, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| format!("S3 engine on {}: {e:?}", root.display()))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            LOCAL_ACCESS_KEY,
            LOCAL_SECRET_KEY,
        ));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind the S3 engine on {addr}: {e}"))?;
        let endpoint = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (stop, mut stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "S3 engine: accept failed");
                            continue;
                        }
                    },
                    _ = &mut stopped => break,
                };
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Ok(Self {
            endpoint,
            stop: Some(stop),
            server: Some(server),
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An S3 SDK client for a local endpoint: path-style addressing, the local dummy keys.
pub fn local_s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(crate::local_credentials())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates the bucket unless it exists.
pub async fn ensure_bucket(client: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.code(),
                Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(format!(
            "create bucket {bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}
