//! `buildit-images`: container images made from store closures.
//!
//! An image is one layer per store path of the runtime closure of the spec's packages (so
//! layers are shared between images and versions; a deterministic budget merges the least
//! shared, smallest paths when there are too many), plus a top layer made straight from the
//! spec: synced files, `/etc/passwd` and `/etc/group`, and a profile linking every listed
//! package's `bin/` and `sbin/` into `/usr/bin` and `/usr/sbin`.
//!
//! - [`layers`]: the layer plan (budget), layer tars from the store's canonical archives,
//!   compression (gzip by default, zstd opt-in) and the compressed-layer cache.
//! - [`top`]: the top layer from the spec.
//! - [`oci`]: OCI image layout, OCI archive, docker-archive and appc ACI writers.
//! - [`flatten`]: layers applied in order into one tree (the ACI's `rootfs/`).
//! - [`contents`]: every file of a written image with the package it came from.
//! - [`push`]: pushing an OCI layout to a registry over the OCI distribution API.
//! - [`registry`]: the OCI distribution client `push` and `buildit-share`'s `oci://` use.
//! - [`sbom`]: the image's SBOMs (SPDX 2.3, and CycloneDX 1.6 in [`sbom_cdx`]), written beside it.
//! - [`selinux`]: SELinux file labels from a module package's file contexts, written as
//!   `security.selinux` attributes of layer entries.
//! - [`template`]: `{{ var }}` substitution for the ACI manifest template.
//!
//! Everything written is bit-reproducible: the same spec and store give the same bytes.

pub mod contents;
pub mod flatten;
pub mod layers;
pub mod oci;
pub mod push;
pub mod registry;
pub mod sbom;
pub mod sbom_cdx;
pub mod selinux;
pub mod tarw;
pub mod template;
pub mod top;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use buildit_store::StorePath;

pub use contents::{image_contents, image_contents_hashed, ContentEntry};
pub use oci::{build_image_with, ImageReport, LayerReport};
pub use push::{push_image, PushOptions, PushReport, SbomPush};
pub use sbom::{SbomPackage, SbomPatch};

/// The default number of layers of an image (store layers + the top layer).
pub const DEFAULT_LAYER_BUDGET: usize = 32;
/// The most layers an image may have (some runtimes and registries refuse more than ~127).
pub const MAX_LAYER_BUDGET: usize = 100;

/// The output format of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).
    #[default]
    Oci,
    /// The OCI layout as one tar file: `image.oci.tar`.
    OciArchive,
    /// `docker save`'s format (`manifest.json`, config, uncompressed layer tars):
    /// `image.docker.tar`.
    DockerArchive,
    /// An appc image: a tar with `manifest` and `rootfs/`: `image.aci`.
    Aci,
}

impl ImageFormat {
    /// Parse the spec's spelling (`oci`, `oci-archive`, `docker-archive`/`docker`, `aci`).
    pub fn parse(s: &str) -> Option<ImageFormat> {
        match s {
            "oci" => Some(ImageFormat::Oci),
            "oci-archive" => Some(ImageFormat::OciArchive),
            "docker-archive" | "docker" => Some(ImageFormat::DockerArchive),
            "aci" => Some(ImageFormat::Aci),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Oci => "oci",
            ImageFormat::OciArchive => "oci-archive",
            ImageFormat::DockerArchive => "docker-archive",
            ImageFormat::Aci => "aci",
        }
    }
}

/// Layer compression.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// gzip (no name, no mtime in the header, fixed level): what every tool reads.
    #[default]
    Gzip,
    /// zstd (fixed level, single-threaded): smaller and faster, not read by Debian 12's umoci.
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" | "gz" => Some(Compression::Gzip),
            "zstd" | "zst" => Some(Compression::Zstd),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A file or directory copied into the image's top layer.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SyncFile {
    /// On the host, or a `/bld/store/...` path (read from the store's physical location).
    pub src: PathBuf,
    /// Absolute path in the image (`/etc/nginx/nginx.conf`); not under `/bld`.
    pub dest: String,
    /// Copy a directory with everything below it (a directory `src` without it is an error).
    pub recursive: bool,
    /// Octal permission text (`"0644"`, `"644"`, `"0755"`); `None` keeps the host's
    /// executable bit (0755 or 0644). Directories get it plus `x` wherever it has `r`.
    pub chmod: Option<String>,
    /// `"uid:gid"` (numeric); `None` is `0:0`.
    pub owner: Option<String>,
}

/// A line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// A line of `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Everything an image is made of, as plain data (the YAML front end lowers `container.yaml`
/// onto it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSpec {
    /// Image name (lowercase OCI reference name: `nginx-production`, `team/app`).
    pub name: String,
    /// Tag (`1.7.6-p1`); the OCI layout's ref name is `name:tag`.
    pub tag: String,
    /// The packages (roots); the image holds their runtime closure. Their `bin/` and `sbin/`
    /// are linked into the profile in this order (first wins on a name conflict).
    pub packages: Vec<StorePath>,
    /// Store paths laid out at `/` instead of under `/bld/store`, one layer each (within the
    /// budget): Debian runtime packages (`libc6`, `libssl3`, …), each an unpacked `.deb` with
    /// merged /usr, so the dynamic loader and the libraries are where Debian puts them.
    #[serde(default)]
    pub rooted: Vec<StorePath>,
    /// Files copied into the top layer, in order.
    pub files: Vec<SyncFile>,
    /// The destinations (as in [`SyncFile::dest`]) whose `chmod` may set the setuid, setgid
    /// and sticky bits (YAML `allow-setuid: true`); any other sync with such a mode is refused.
    #[serde(default)]
    pub setuid_allowed: Vec<String>,
    /// `/etc/passwd`; empty means `root` (0) and `nobody` (65534).
    pub users: Vec<User>,
    /// `/etc/group`; empty means one group per distinct gid of `users`, named after its first
    /// user (`nogroup` for 65534).
    pub groups: Vec<Group>,
    /// Extra environment, after `PATH=/usr/bin:/usr/sbin:/bin:/sbin` (a `PATH` here replaces it).
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub workdir: Option<String>,
    /// The config's `User` (`"0"`, `"nobody"`, `"1000:1000"`).
    pub user: Option<String>,
    /// Exposed ports: `"80"` (tcp), `"80/tcp"`, `"53/udp"`.
    pub ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// OCI `os` (`linux`).
    pub os: String,
    /// OCI `architecture` (`amd64`).
    pub arch: String,
    /// The config's `created` as seconds since the epoch (the spec's `SOURCE_DATE_EPOCH`);
    /// `None` means 1 (`1970-01-01T00:00:01Z`).
    pub created: Option<i64>,
    pub format: ImageFormat,
    pub compression: Compression,
    /// Total layers including the top layer; `None` means [`DEFAULT_LAYER_BUDGET`]; at least
    /// 2, at most [`MAX_LAYER_BUDGET`].
    pub layer_budget: Option<usize>,
    /// Template variables for `aci_manifest` (besides the built-in `name`, `version`, `tag`,
    /// `os`, `arch`).
    pub vars: BTreeMap<String, String>,
    /// The ACI manifest template (`image: { type: aci, content: ... }`); `None` derives one.
    pub aci_manifest: Option<String>,
    /// What the SBOM (`sbom.spdx.json` beside the image) lists, in order: the packages of the
    /// runtime closure and the Debian runtime packages (see [`sbom`]).
    #[serde(default)]
    pub sbom: Vec<SbomPackage>,
    /// SELinux file contexts that label the image's files (a package's `selinux` option):
    /// empty means no label anywhere (and the same bytes as an image without the field).
    #[serde(default)]
    pub file_contexts: Vec<FileContexts>,
}

/// SELinux labels that come with a package: the file contexts of a policy module package
/// label the package's files in its store layer (matched as if installed under `prefix`)
/// and the top layer's files (matched at their own paths), as `security.selinux` extended
/// attributes (see [`selinux`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileContexts {
    /// The package whose files are labelled (one of [`ImageSpec::packages`]' closure).
    pub package: StorePath,
    /// The module package (`.pp`, uncompressed): a store path, or a file below one.
    pub module: String,
    /// Where the package's files are matched as installed (`/usr`: its `sbin/nginx` is
    /// matched as `/usr/sbin/nginx`).
    pub prefix: String,
}

impl ImageSpec {
    /// A spec with the defaults: OCI layout, gzip, linux/amd64, no files, default users.
    pub fn new(name: &str, tag: &str, packages: Vec<StorePath>) -> ImageSpec {
        ImageSpec {
            name: name.to_string(),
            tag: tag.to_string(),
            packages,
            rooted: Vec::new(),
            files: Vec::new(),
            setuid_allowed: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
            env: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            workdir: None,
            user: None,
            ports: Vec::new(),
            labels: BTreeMap::new(),
            os: "linux".into(),
            arch: "amd64".into(),
            created: None,
            format: ImageFormat::Oci,
            compression: Compression::Gzip,
            layer_budget: None,
            vars: BTreeMap::new(),
            aci_manifest: None,
            sbom: Vec::new(),
            file_contexts: Vec::new(),
        }
    }
}

/// Errors of image building, reading and pushing.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid image spec: {0}")]
    Spec(String),
    #[error("store: {0}")]
    Store(String),
    #[error("template: {0}")]
    Template(#[from] template::TemplateError),
    #[error("not a buildit image: {0}")]
    NotAnImage(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("SELinux file contexts: {0}")]
    Selinux(#[from] selinux::SelinuxError),
}

impl ImageError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }
}

/// The canonical archive function of the store: writes the tar of the object at `src` with its
/// root entry named `prefix` (see the store's `archive` module).
pub type ArchiveFn = fn(src: &Path, prefix: &str, out: &mut dyn Write) -> Result<(), String>;

/// What image building needs from a store. Metadata is read on the calling thread; archives
/// are written from worker threads through the plain function [`StoreView::archive_fn`].
pub trait StoreView {
    /// Where the object of `p` is on disk.
    fn physical(&self, p: &StorePath) -> PathBuf;
    /// The closure of `roots` (the roots included), in any order.
    fn closure(&self, roots: &[StorePath]) -> Result<Vec<StorePath>, ImageError>;
    /// The direct references of `p` (self-references may be included).
    fn references(&self, p: &StorePath) -> Result<Vec<StorePath>, ImageError>;
    /// The content hash of `p` (the layer cache key).
    fn content_hash(&self, p: &StorePath) -> Result<String, ImageError>;
    /// The size of `p`'s archive (or its file bytes), for the layer budget.
    fn size(&self, p: &StorePath) -> Result<u64, ImageError>;
    /// Where compressed layers are cached (`<state dir>/layers`, or `$BUILDIT_LAYER_CACHE`).
    fn layer_cache_dir(&self) -> PathBuf;
    /// The canonical archive writer.
    fn archive_fn(&self) -> ArchiveFn;
}

fn store_err(e: buildit_store::StoreError) -> ImageError {
    ImageError::Store(e.to_string())
}

/// Where compressed layers of the store at `layout` are cached: `<state dir>/layers`, or
/// `$BUILDIT_LAYER_CACHE` (benchmarks measure assembly with an empty one); the image's bytes
/// never depend on it.
pub fn layer_cache_dir(layout: &buildit_store::StoreLayout) -> PathBuf {
    match std::env::var_os("BUILDIT_LAYER_CACHE").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => layout.state_dir().join("layers"),
    }
}

/// The store's canonical archive writer, as an [`ArchiveFn`].
pub fn store_archive(src: &Path, prefix: &str, out: &mut dyn Write) -> Result<(), String> {
    buildit_store::archive::write_archive(src, prefix, out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl StoreView for buildit_store::Store {
    fn physical(&self, p: &StorePath) -> PathBuf {
        self.layout().physical(p)
    }
    fn closure(&self, roots: &[StorePath]) -> Result<Vec<StorePath>, ImageError> {
        for r in roots {
            if !self.is_valid(r).map_err(store_err)? {
                return Err(ImageError::Store(format!(
                    "{r} is not a valid path of the store at {}",
                    self.layout().root.display()
                )));
            }
        }
        Ok(buildit_store::Store::closure(self, roots)
            .map_err(store_err)?
            .into_iter()
            .collect())
    }
    fn references(&self, p: &StorePath) -> Result<Vec<StorePath>, ImageError> {
        Ok(buildit_store::Store::references(self, p)
            .map_err(store_err)?
            .into_iter()
            .collect())
    }
    fn content_hash(&self, p: &StorePath) -> Result<String, ImageError> {
        self.path_info(p)
            .map_err(store_err)?
            .map(|i| i.content_hash.to_hex())
            .ok_or_else(|| ImageError::Store(format!("{p} is not valid")))
    }
    fn size(&self, p: &StorePath) -> Result<u64, ImageError> {
        self.path_info(p)
            .map_err(store_err)?
            .map(|i| i.size)
            .ok_or_else(|| ImageError::Store(format!("{p} is not valid")))
    }
    fn layer_cache_dir(&self) -> PathBuf {
        layer_cache_dir(self.layout())
    }
    fn archive_fn(&self) -> ArchiveFn {
        store_archive
    }
}

/// Build the image of `spec` from `store` into `out_dir` (a staging directory that must not
/// exist or be empty; the caller registers it as a store path). See [`oci`] for the formats.
pub fn build_image(
    store: &buildit_store::Store,
    spec: &ImageSpec,
    out_dir: &Path,
) -> Result<ImageReport, ImageError> {
    build_image_with(store, spec, out_dir)
}
