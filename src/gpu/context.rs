//! The device: finding an adapter, asking for the features and limits the engine
//! uses, and reading buffers back without blocking (so the same code runs on wasm,
//! where the browser's event loop delivers the map callback).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{GqaError, Result};

/// A device and queue with what the engine needs to know about them.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The adapter has SUBGROUP: matvec reduces with subgroupAdd.
    pub subgroups: bool,
    /// The adapter has TIMESTAMP_QUERY: each forward pass is timed on the GPU.
    pub timestamps: bool,
    /// The first GPU error no call caught (validation, out of memory). wgpu's default
    /// handler panics, which would kill the page's wasm module; we keep the message and
    /// return it from the next read-back instead.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// The first adapter the platform offers (Vulkan natively, WebGPU in the browser),
    /// with its own limits (lavapipe: 128 MiB storage bindings; SwiftShader: 1 GiB).
    /// An error says why there is none, for the session's fallback message.
    pub async fn new() -> Result<GpuContext> {
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(GqaError::Backend("this browser (or runtime) has no WebGPU (navigator.gpu)".into()));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = if cfg!(target_arch = "wasm32") {
            wgpu::Backends::BROWSER_WEBGPU
        } else {
            wgpu::Backends::VULKAN
        };
        desc.backends = desc.backends.with_env();
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GqaError::Backend(format!("no GPU adapter ({e}); natively, install mesa-vulkan-drivers")))?;
        let info = adapter.get_info();
        let available = adapter.features();
        let mut features = wgpu::Features::empty();
        for wanted in [wgpu::Features::SUBGROUP, wgpu::Features::TIMESTAMP_QUERY] {
            if available.contains(wanted) {
                features |= wanted;
            }
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gqa"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GqaError::Backend(format!("cannot open the GPU device {}: {e}", info.name)))?;
        let uncaptured: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            slot.lock().unwrap().get_or_insert_with(|| e.to_string());
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            uncaptured,
        })
    }

    /// "name (backend, device type)".
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// How many workgroups one dispatch should launch to keep this device busy. A
    /// discrete GPU runs ~100 compute units of several workgroups each; an integrated
    /// one a few tens; a CPU rasterizer (lavapipe, SwiftShader) one per thread, where
    /// more workgroups only add merging.
    pub fn target_workgroups(&self) -> usize {
        match self.info.device_type {
            wgpu::DeviceType::Cpu => 16,
            wgpu::DeviceType::IntegratedGpu => 256,
            _ => 1024,
        }
    }

    /// The largest buffer one storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Map `buffer` (MAP_READ) and copy its first `len` bytes out. Natively this waits
    /// for the device; on wasm it yields to the browser until the map completes.
    pub async fn read(&self, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        let slot: Arc<Mutex<Shared>> = Arc::default();
        let signal = slot.clone();
        buffer.map_async(wgpu::MapMode::Read, 0..len, move |result| {
            let mut s = signal.lock().unwrap();
            s.result = Some(result.map_err(|e| e.to_string()));
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GqaError::Backend(format!("waiting for the GPU failed: {e}")))?;
        MapDone { slot }.await.map_err(|e| GqaError::Backend(format!("reading back from the GPU failed: {e}")))?;
        if let Some(e) = self.uncaptured.lock().unwrap().take() {
            buffer.unmap();
            return Err(GqaError::Backend(format!("the GPU reported an error: {e}")));
        }
        let bytes = buffer
            .get_mapped_range(0..len)
            .map_err(|e| GqaError::Backend(format!("reading back from the GPU failed: {e}")))?
            .to_vec();
        buffer.unmap();
        Ok(bytes)
    }
}

#[derive(Default)]
struct Shared {
    result: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

/// Resolves when the map callback has run.
struct MapDone {
    slot: Arc<Mutex<Shared>>,
}

impl Future for MapDone {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
