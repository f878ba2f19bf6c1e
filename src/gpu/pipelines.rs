//! The compute pipelines: one WGSL file per kernel (shaders/), each with an explicit
//! bind group layout. Binding 0 is always the kernel's parameters, a uniform at a
//! dynamic offset into one per-forward parameter buffer; bindings 1.. are storage
//! buffers, read-only or read-write as listed here.

use super::context::GpuContext;
use crate::quant::Format;
use crate::tensor::KvDType;

/// Bytes of one kernel's parameters (at most 16 words; slots are 256-byte aligned).
pub const PARAMS_BYTES: u64 = 64;

/// The kernels. `binding_kinds` lists the storage bindings after the parameters
/// (true = read-write).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matvec,
    MatvecSubgroup,
    Matmul,
    RmsNorm,
    Rope,
    KvStore,
    Attention,
    AttentionMerge,
    AttentionProbe,
    Swiglu,
    Add,
    Embed,
    Argmax,
    Sample,
    Copy,
    Empty,
}

impl Kernel {
    fn source(self) -> &'static str {
        match self {
            // The weight readers: quant.wgsl decodes every storage format.
            Kernel::Matvec => concat!(
                include_str!("../../shaders/quant.wgsl"),
                include_str!("../../shaders/matvec_common.wgsl"),
                include_str!("../../shaders/matvec.wgsl")
            ),
            Kernel::MatvecSubgroup => concat!(
                include_str!("../../shaders/quant.wgsl"),
                include_str!("../../shaders/matvec_common.wgsl"),
                include_str!("../../shaders/matvec_subgroup.wgsl")
            ),
            Kernel::Matmul => concat!(include_str!("../../shaders/quant.wgsl"), include_str!("../../shaders/matmul.wgsl")),
            Kernel::RmsNorm => include_str!("../../shaders/rms_norm.wgsl"),
            Kernel::Rope => include_str!("../../shaders/rope.wgsl"),
            Kernel::KvStore => concat!(include_str!("../../shaders/kv_format.wgsl"), include_str!("../../shaders/kv_store.wgsl")),
            Kernel::Attention => concat!(include_str!("../../shaders/kv_format.wgsl"), include_str!("../../shaders/attention.wgsl")),
            Kernel::AttentionMerge => include_str!("../../shaders/attention_merge.wgsl"),
            Kernel::AttentionProbe => {
                concat!(include_str!("../../shaders/kv_format.wgsl"), include_str!("../../shaders/attention_probe.wgsl"))
            }
            Kernel::Swiglu => include_str!("../../shaders/swiglu.wgsl"),
            Kernel::Add => include_str!("../../shaders/add.wgsl"),
            Kernel::Embed => concat!(include_str!("../../shaders/quant.wgsl"), include_str!("../../shaders/embed.wgsl")),
            Kernel::Argmax => include_str!("../../shaders/argmax.wgsl"),
            Kernel::Sample => include_str!("../../shaders/sample.wgsl"),
            Kernel::Copy => include_str!("../../shaders/copy.wgsl"),
            Kernel::Empty => include_str!("../../shaders/empty.wgsl"),
        }
    }

    /// Storage bindings 1.. : true = read_write.
    pub fn binding_kinds(self) -> &'static [bool] {
        match self {
            // w, x, y
            Kernel::Matvec | Kernel::MatvecSubgroup | Kernel::Matmul => &[false, false, true],
            // x, w, out
            Kernel::RmsNorm => &[false, false, true],
            // table, x
            Kernel::Rope => &[false, true],
            // k, v, k_cache, v_cache
            Kernel::KvStore => &[false, false, true, true],
            // q, k_cache, v_cache, partial
            Kernel::Attention => &[false, false, false, true],
            // partial, out
            Kernel::AttentionMerge => &[false, true],
            // q, k_cache, probe
            Kernel::AttentionProbe => &[false, false, true],
            // gate, up
            Kernel::Swiglu => &[true, false],
            // x, y
            Kernel::Add => &[true, false],
            // tokens, table, x
            Kernel::Embed => &[false, false, true],
            // logits, result
            Kernel::Argmax | Kernel::Sample => &[false, true],
            // src, dst
            Kernel::Copy => &[false, true],
            // x
            Kernel::Empty => &[true],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matvec => "matvec",
            Kernel::MatvecSubgroup => "matvec_subgroup",
            Kernel::Matmul => "matmul",
            Kernel::RmsNorm => "rms_norm",
            Kernel::Rope => "rope",
            Kernel::KvStore => "kv_store",
            Kernel::Attention => "attention",
            Kernel::AttentionMerge => "attention_merge",
            Kernel::AttentionProbe => "attention_probe",
            Kernel::Swiglu => "swiglu",
            Kernel::Add => "add",
            Kernel::Embed => "embed",
            Kernel::Argmax => "argmax",
            Kernel::Sample => "sample",
            Kernel::Copy => "copy",
            Kernel::Empty => "empty",
        }
    }
}

/// Which storage formats a pipeline was specialized for (WGSL override constants): the
/// weights' (quant.wgsl's FORMAT) and the KV cache's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub weights: Format,
    pub kv: KvDType,
}

impl Variant {
    /// For kernels that read no weights.
    pub const PLAIN: Variant = Variant { weights: Format::F32, kv: KvDType::F32 };
}

struct Entry {
    kernel: Kernel,
    variant: Variant,
    pipeline: wgpu::ComputePipeline,
}

/// Layouts (one per kernel) and pipelines (one per kernel and storage format, built
/// on first use and kept across model changes).
pub struct Pipelines {
    layouts: Vec<(Kernel, wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    modules: Vec<(Kernel, wgpu::ShaderModule)>,
    entries: Vec<Entry>,
}

impl Pipelines {
    pub fn new() -> Pipelines {
        Pipelines { layouts: Vec::new(), modules: Vec::new(), entries: Vec::new() }
    }

    pub fn layout(&mut self, ctx: &GpuContext, kernel: Kernel) -> &wgpu::BindGroupLayout {
        self.ensure_layout(ctx, kernel);
        &self.layouts.iter().find(|l| l.0 == kernel).unwrap().1
    }

    fn ensure_layout(&mut self, ctx: &GpuContext, kernel: Kernel) {
        if self.layouts.iter().any(|l| l.0 == kernel) {
            return;
        }
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
            },
            count: None,
        }];
        for (i, &read_write) in kernel.binding_kinds().iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: !read_write },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let bind_group_layout = ctx.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.name()),
            entries: &entries,
        });
        let pipeline_layout = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.name()),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        self.layouts.push((kernel, bind_group_layout, pipeline_layout));
    }

    /// The pipeline for `kernel` specialized to `variant`.
    pub fn get(&mut self, ctx: &GpuContext, kernel: Kernel, variant: Variant) -> &wgpu::ComputePipeline {
        if let Some(i) = self.entries.iter().position(|e| e.kernel == kernel && e.variant == variant) {
            return &self.entries[i].pipeline;
        }
        self.ensure_layout(ctx, kernel);
        if !self.modules.iter().any(|m| m.0 == kernel) {
            let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
            self.modules.push((kernel, module));
        }
        let module = &self.modules.iter().find(|m| m.0 == kernel).unwrap().1;
        let layout = &self.layouts.iter().find(|l| l.0 == kernel).unwrap().2;
        // Only the constants a shader declares may be passed.
        let source = kernel.source();
        let mut constants: Vec<(&str, f64)> = Vec::new();
        if source.contains("override FORMAT") {
            constants.push(("FORMAT", variant.weights.ggml_type() as f64));
        }
        if source.contains("override KV_F16") {
            constants.push(("KV_F16", (variant.kv == KvDType::F16) as u8 as f64));
            constants.push(("KV_I8", (variant.kv == KvDType::I8) as u8 as f64));
        }
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name()),
            layout: Some(layout),
            module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.entries.push(Entry { kernel, variant, pipeline });
        &self.entries.last().unwrap().pipeline
    }
}

impl Pipelines {
    /// A pipeline `get` has built.
    pub fn cached(&self, kernel: Kernel, variant: Variant) -> &wgpu::ComputePipeline {
        &self.entries.iter().find(|e| e.kernel == kernel && e.variant == variant).expect("pipeline built").pipeline
    }
}

impl Default for Pipelines {
    fn default() -> Self {
        Pipelines::new()
    }
}

/// The variant for weights stored in `weights` and a KV cache dtype.
pub fn variant(weights: Format, kv: KvDType) -> Variant {
    Variant { weights, kv }
}
