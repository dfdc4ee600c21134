//! The f32 GEMM behind every matmul on the CPU, chosen when the program
//! starts: Intel MKL's `sgemm`, loaded from its shared library if one is
//! installed and the CPU is an Intel one, else the pure-Rust `gemm` crate
//! built into the binary.
//!
//! MKL is the fastest f32 GEMM measured on the Intel Xeons this project runs
//! on (320-330 GFLOP/s at 1024^3 on 2 vCPUs against the `gemm` crate's
//! 212-291); on AMD EPYC it runs its AVX2 code, so there the built-in one is
//! kept. Nothing has to be rebuilt: `pip install mkl==2024.2.0
//! intel-openmp==2024.2.0` (or `bash scripts/fetch-mkl.sh --runtime`) puts
//! the libraries where this looks.
//!
//! `RHO1_GEMM` = `auto` (default) | `mkl` (load it on any CPU; an error if it
//! is not found) | `builtin` (never load it). `RHO1_MKL_DIR` names the folder
//! holding `libmkl_rt.so.2`; otherwise `$VIRTUAL_ENV/lib`, `$CONDA_PREFIX/lib`,
//! `~/.local/lib` and then the loader's own search path are tried. Builds
//! with the `mkl` cargo feature link MKL statically and use it always.
//!
//! candle's matmul reaches MKL through `candle_core::gemm_hook`, which only
//! the vendored candle-core has (vendor/README.md); built with the
//! `upstream-candle` feature against crates.io's candle-core, MKL runs only
//! our own kernels' products and candle's matmul keeps the `gemm` crate.

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Fortran BLAS `sgemm_`: column-major, every argument by reference.
pub type Sgemm = unsafe extern "C" fn(
    transa: *const c_char,
    transb: *const c_char,
    m: *const c_int,
    n: *const c_int,
    k: *const c_int,
    alpha: *const f32,
    a: *const f32,
    lda: *const c_int,
    b: *const f32,
    ldb: *const c_int,
    beta: *const f32,
    c: *mut f32,
    ldc: *const c_int,
);

type SetThreads = unsafe extern "C" fn(c_int);

/// MKL, loaded.
struct Mkl {
    sgemm: Sgemm,
    set_threads: Option<SetThreads>,
    /// Where it came from and its version, for logs.
    origin: String,
}

static CHOICE: OnceLock<Option<Mkl>> = OnceLock::new();

/// The shared library's file name (MKL 2021 and later).
const MKL_RT: &str = "libmkl_rt.so.2";

/// Decides the GEMM (once; later calls return the first answer) and registers
/// MKL's with candle's matmul when it is chosen. Call before the first matmul
/// (the binaries do first thing; `model::Llama::load` does too).
pub fn init() -> Result<()> {
    if CHOICE.get().is_some() {
        return Ok(());
    }
    let mode = std::env::var("RHO1_GEMM").unwrap_or_else(|_| "auto".into());
    let mkl = match mode.as_str() {
        "builtin" | "gemm" => None,
        "auto" if !cfg!(feature = "mkl") && is_intel() => load().ok(),
        "auto" => None,
        "mkl" if cfg!(feature = "mkl") => None, // linked in: already MKL
        "mkl" => Some(load()?),
        other => {
            return Err(Error::Invalid(format!(
                "RHO1_GEMM={other:?}: expected auto, mkl or builtin"
            )))
        }
    };
    if let Some(m) = &mkl {
        // candle's own matmul too, through the vendored hook (vendor/patches/0004);
        // with crates.io's candle-core only our kernels call MKL.
        #[cfg(not(feature = "upstream-candle"))]
        candle_core::gemm_hook::set_f32_gemm(candle_gemm);
        if let Some(f) = m.set_threads {
            // SAFETY: MKL_Set_Num_Threads takes a plain int.
            unsafe { f(crate::kernels::threads::worker_threads() as c_int) };
        }
    }
    let _ = CHOICE.set(mkl);
    Ok(())
}

/// [`init`], for a binary's `main`: says on stderr when MKL was loaded.
pub fn init_and_report() -> Result<()> {
    init()?;
    if loaded_sgemm().is_some() {
        crate::say!(
            "matmul: {} (RHO1_GEMM=builtin for the built-in one)",
            describe()
        );
    }
    Ok(())
}

/// Follows a change of the thread count (`--threads`).
pub fn set_threads(n: usize) {
    if let Some(Some(Mkl {
        set_threads: Some(f),
        ..
    })) = CHOICE.get()
    {
        // SAFETY: MKL_Set_Num_Threads takes a plain int.
        unsafe { f(n as c_int) };
    }
}

/// MKL's `sgemm_` when it was loaded at run time.
pub fn loaded_sgemm() -> Option<Sgemm> {
    CHOICE.get()?.as_ref().map(|m| m.sgemm)
}

/// What does the matmuls, for logs and benchmark reports.
pub fn describe() -> String {
    if cfg!(feature = "mkl") {
        return "mkl (linked)".into();
    }
    match CHOICE.get() {
        Some(Some(m)) => format!("mkl ({})", m.origin),
        _ => "gemm-crate".into(),
    }
}

/// GenuineIntel, from CPUID leaf 0.
fn is_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86_64 CPU.
        let r = std::arch::x86_64::__cpuid(0);
        let mut v = [0u8; 12];
        v[..4].copy_from_slice(&r.ebx.to_le_bytes());
        v[4..8].copy_from_slice(&r.edx.to_le_bytes());
        v[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &v == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// MKL's OpenMP workers spin 200 ms after each call by default and then
/// fight rayon's for the cores: elementwise MKL calls ran 3-4x slower that
/// way on this project's Intel machine. Unless the user chose a block time,
/// they sleep at once. Call before MKL's first call.
pub(crate) fn quiet_openmp() {
    if std::env::var_os("KMP_BLOCKTIME").is_none() {
        std::env::set_var("KMP_BLOCKTIME", "0");
    }
}

/// The folders tried for `libmkl_rt.so.2`, in order.
fn candidates() -> Vec<PathBuf> {
    if let Some(d) = std::env::var_os("RHO1_MKL_DIR") {
        return vec![PathBuf::from(d)];
    }
    let mut dirs = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(p) = std::env::var_os(var) {
            dirs.push(Path::new(&p).join("lib"));
        }
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".local/lib"));
    }
    dirs
}

fn load() -> Result<Mkl> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    quiet_openmp();
    let dirs = candidates();
    let explicit = std::env::var_os("RHO1_MKL_DIR").is_some();
    let mut tried = Vec::new();
    let found = dirs
        .iter()
        .map(|d| d.join(MKL_RT))
        .find(|p| p.is_file())
        .map(|p| p.into_os_string());
    let name = match found {
        Some(p) => p,
        None if explicit => {
            return Err(Error::Invalid(format!(
                "RHO1_MKL_DIR={}: no {MKL_RT} there",
                dirs[0].display()
            )))
        }
        None => MKL_RT.into(), // the loader's search path
    };
    let dir = Path::new(&name)
        .parent()
        .filter(|d| !d.as_os_str().is_empty());
    // MKL's threading layer needs Intel's OpenMP runtime; the intel-openmp
    // wheel puts it beside MKL, where the loader would not look by itself.
    if let Some(d) = dir {
        let omp = d.join("libiomp5.so");
        if omp.is_file() {
            // SAFETY: loading a library runs its initialisers; this is the
            // OpenMP runtime MKL is built against.
            unsafe { Library::open(Some(&omp), RTLD_NOW | RTLD_GLOBAL) }
                .map(std::mem::forget)
                .map_err(|e| Error::Invalid(format!("loading {}: {e}", omp.display())))?;
        }
    }
    // SAFETY: as above, MKL's own initialisers.
    let lib = unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| {
        tried.extend(dirs.iter().map(|d| d.display().to_string()));
        Error::Invalid(format!(
            "RHO1_GEMM=mkl: cannot load {} ({e}); looked in [{}] and the loader's path. Install it with `pip install mkl==2024.2.0 intel-openmp==2024.2.0` or `bash scripts/fetch-mkl.sh --runtime`, and point RHO1_MKL_DIR at the folder",
            Path::new(&name).display(),
            tried.join(", ")
        ))
    })?;
    // SAFETY: the symbols have these C signatures in every MKL since 2017.
    let (sgemm, set_threads, version) = unsafe {
        let sgemm = *lib.get::<Sgemm>(b"sgemm_\0").map_err(|e| {
            Error::Invalid(format!("{}: no sgemm_ ({e})", Path::new(&name).display()))
        })?;
        let set_threads = lib
            .get::<SetThreads>(b"MKL_Set_Num_Threads\0")
            .ok()
            .map(|s| *s);
        let version = lib
            .get::<unsafe extern "C" fn(*mut c_char, c_int)>(b"MKL_Get_Version_String\0")
            .ok()
            .map(|f| {
                let mut buf = [0 as c_char; 198];
                f(buf.as_mut_ptr(), buf.len() as c_int);
                std::ffi::CStr::from_ptr(buf.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            });
        (sgemm, set_threads, version)
    };
    std::mem::forget(lib); // the function pointers live as long as the process

    // "Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build ..." -> "2024.2"
    let version = version.unwrap_or_default();
    let version = version
        .split_once("Version ")
        .map_or("", |(_, v)| v)
        .split(['-', ' '])
        .next()
        .unwrap_or("");
    Ok(Mkl {
        sgemm,
        set_threads,
        origin: format!("{version} from {}", Path::new(&name).display()),
    })
}

/// candle's matmul hook: row-major `dst = lhs @ rhs` through MKL.
///
/// # Safety
/// The pointers and strides describe valid (m, k), (k, n) and (m, n) matrices.
#[cfg(not(feature = "upstream-candle"))]
#[allow(clippy::too_many_arguments)]
unsafe fn candle_gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_cs: usize,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_cs: usize,
    rhs_rs: usize,
) -> bool {
    let Some(f) = loaded_sgemm() else {
        return false;
    };
    call(
        f,
        (m, n, k),
        (dst, dst_rs),
        false,
        (lhs, lhs_rs, lhs_cs),
        (rhs, rhs_rs, rhs_cs),
    )
}

/// One operand as column-major BLAS sees it: the transpose flag and the
/// leading dimension, for a matrix of `rows` x `cols` (row-major view). None
/// when neither stride is 1.
fn operand(rs: usize, cs: usize, rows: usize, cols: usize) -> Option<(u8, c_int)> {
    // Row-major X (rows, cols) is column-major X^T: BLAS wants X^T
    // untransposed when the column stride is 1, X transposed otherwise.
    let (flag, ld, min) = if cs == 1 {
        (b'N', rs, cols)
    } else if rs == 1 {
        (b'T', cs, rows)
    } else {
        return None;
    };
    c_int::try_from(ld.max(min).max(1))
        .ok()
        .map(|ld| (flag, ld))
}

/// Row-major `dst (m, n) = a (m, k) @ b (k, n) [+ dst]` as the column-major
/// `dst^T = b^T a^T`; operands as (pointer, row stride, column stride).
/// False, having written nothing, when a stride does not fit BLAS.
///
/// # Safety
/// Every element the strides reach lies inside the caller's buffers.
pub unsafe fn call(
    f: Sgemm,
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (b, b_rs, b_cs): (*const f32, usize, usize),
) -> bool {
    let (Some((tb, ldb)), Some((ta, lda))) = (operand(b_rs, b_cs, k, n), operand(a_rs, a_cs, m, k))
    else {
        return false;
    };
    let (Ok(mi), Ok(ni), Ok(ki), Ok(ldc)) = (
        c_int::try_from(m),
        c_int::try_from(n),
        c_int::try_from(k),
        c_int::try_from(dst_rs.max(n).max(1)),
    ) else {
        return false;
    };
    let (alpha, beta) = (1f32, if accumulate { 1f32 } else { 0f32 });
    f(
        &(tb as c_char),
        &(ta as c_char),
        &ni,
        &mi,
        &ki,
        &alpha,
        b,
        &ldb,
        a,
        &lda,
        &beta,
        dst,
        &ldc,
    );
    true
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// candle's matmul through whatever [`super::init`] chose, for every
    /// operand layout (plain, transposed, batched, a narrowed row range),
    /// against products done in f64. With MKL installed where `auto` finds
    /// it (or `RHO1_MKL_DIR`), on an Intel CPU, this covers the MKL path.
    #[test]
    fn matmul_agrees_with_f64_products_on_the_chosen_gemm() -> candle_core::Result<()> {
        super::init().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        eprintln!("GEMM under test: {}", super::describe());
        let dev = Device::Cpu;
        let (b, m, k, n) = (3, 37, 53, 29);
        let vals = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed) % 101) as f32 / 50.0 - 1.0)
                .collect()
        };
        let a = Tensor::from_vec(vals(b * m * k, 1), (b, m, k), &dev)?;
        let bt = Tensor::from_vec(vals(b * n * k, 2), (b, n, k), &dev)?;
        let cases = [
            (a.clone(), bt.transpose(1, 2)?.contiguous()?),
            (a.clone(), bt.transpose(1, 2)?),
            (
                a.transpose(1, 2)?.contiguous()?.transpose(1, 2)?,
                bt.transpose(1, 2)?,
            ),
            (a.narrow(1, 5, 20)?, bt.transpose(1, 2)?.contiguous()?),
        ];
        for (i, (x, y)) in cases.iter().enumerate() {
            let got = x.matmul(y)?.to_vec3::<f32>()?;
            let want = x
                .to_dtype(candle_core::DType::F64)?
                .matmul(&y.to_dtype(candle_core::DType::F64)?)?
                .to_vec3::<f64>()?;
            for (g, w) in got
                .iter()
                .flatten()
                .flatten()
                .zip(want.iter().flatten().flatten())
            {
                assert!((*g as f64 - w).abs() < 1e-4, "case {i}: {g} vs {w}");
            }
        }
        Ok(())
    }
}
