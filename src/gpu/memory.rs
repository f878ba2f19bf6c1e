//! GPU buffers with allocation accounting: every buffer the engine creates goes
//! through [`Allocator`], which counts live bytes; dropping a [`GpuBuffer`]
//! destroys it at once (not when wgpu gets round to it) and uncounts it.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wgpu::util::DeviceExt;

#[derive(Clone, Default)]
pub struct Allocator {
    live: Arc<AtomicU64>,
}

impl Allocator {
    /// Bytes in live buffers.
    pub fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    pub fn zeroed(&self, device: &wgpu::Device, label: &str, size: u64, usage: wgpu::BufferUsages) -> GpuBuffer {
        // Sizes are rounded up to 16 bytes (vec4 loads; copies need multiples of 4).
        let size = size.max(16).div_ceil(16) * 16;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false });
        self.track(buffer, size)
    }

    pub fn with_data(&self, device: &wgpu::Device, label: &str, data: &[u8], usage: wgpu::BufferUsages) -> GpuBuffer {
        let mut bytes = data.to_vec();
        bytes.resize(bytes.len().max(16).div_ceil(16) * 16, 0);
        let buffer = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents: &bytes, usage });
        self.track(buffer, bytes.len() as u64)
    }

    fn track(&self, buffer: wgpu::Buffer, size: u64) -> GpuBuffer {
        self.live.fetch_add(size, Ordering::Relaxed);
        GpuBuffer { buffer, size, live: self.live.clone() }
    }
}

pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    size: u64,
    live: Arc<AtomicU64>,
}

impl GpuBuffer {
    pub fn bytes(&self) -> u64 {
        self.size
    }
}

impl Deref for GpuBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        self.buffer.destroy();
        self.live.fetch_sub(self.size, Ordering::Relaxed);
    }
}
