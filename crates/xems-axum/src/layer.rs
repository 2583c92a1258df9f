//! The tower [`Layer`] and [`Service`] that give every request its session
//! context and write new tokens into responses.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use xems_core::SessionStore;

use crate::config::{XemsConfig, XemsLayerBuilder};
use crate::context::{Backend, RequestCtx, Shared};
use crate::extract::XemsContext;

/// The xems session layer: reads the client's token (cookie first, then
/// header), lets handlers resolve, link, unlink and migrate sessions through
/// the [`Session`](crate::Session) and [`Xems`](crate::Xems) extractors, and
/// writes the new token into the response when it changed.
///
/// Generic over any [`SessionStore`]: the embedded engine, the network
/// client, or `Arc<dyn DynSessionStore>` to choose at run time. Cloning the
/// layer is cheap (it shares the store).
///
/// ```
/// use axum::{Router, routing::get};
/// use xems_axum::{Session, XemsLayer};
///
/// let layer = XemsLayer::builder(xems_engine::Engine::new()).with_sandbox("active").build()?;
/// let app: Router = Router::new().route("/me", get(|s: Session| async move { s.id().to_string() })).layer(layer);
/// # Ok::<(), xems_axum::ConfigError>(())
/// ```
pub struct XemsLayer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for XemsLayer<S> {
    fn clone(&self) -> Self {
        XemsLayer { shared: self.shared.clone() }
    }
}

impl<S> fmt::Debug for XemsLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XemsLayer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl<S: SessionStore> XemsLayer<S> {
    /// A builder with XyPriss's defaults: sandbox `active`, TTL 15 minutes,
    /// rotation on every request, grace 1 s, cookie `xems_token` (HttpOnly,
    /// Secure, SameSite=Strict, Path=/), header `x-xypriss-token`.
    pub fn builder(store: S) -> XemsLayerBuilder<S> {
        XemsLayerBuilder::new(store)
    }

    pub(crate) fn from_parts(config: XemsConfig, store: S) -> Self {
        XemsLayer { shared: Arc::new(Shared { config, store }) }
    }

    /// The validated configuration.
    pub fn config(&self) -> &XemsConfig {
        &self.shared.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }
}

impl<S: SessionStore, I> Layer<I> for XemsLayer<S> {
    type Service = XemsService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        XemsService { shared: self.shared.clone(), inner }
    }
}

/// The service [`XemsLayer`] wraps around an inner service.
pub struct XemsService<S, I> {
    shared: Arc<Shared<S>>,
    inner: I,
}

impl<S, I: Clone> Clone for XemsService<S, I> {
    fn clone(&self) -> Self {
        XemsService { shared: self.shared.clone(), inner: self.inner.clone() }
    }
}

impl<S, I> fmt::Debug for XemsService<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XemsService").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl<S, I, ReqBody, ResBody> Service<Request<ReqBody>> for XemsService<S, I>
where
    S: SessionStore,
    I: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResBody>;
    type Error = I::Error;
    type Future = ResponseFuture<I::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let backend: Arc<dyn Backend> = self.shared.clone();
        let ctx = Arc::new(RequestCtx::new(backend, req.headers()));
        req.extensions_mut().insert(XemsContext(ctx.clone()));
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture { inner: inner.call(req), ctx: Some(ctx) }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`XemsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        ctx: Option<Arc<RequestCtx>>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some(ctx)) = (&mut result, this.ctx.take()) {
            ctx.finish(response);
        }
        Poll::Ready(result)
    }
}
