//! gRPC server reflection, both `grpc.reflection.v1` and the older
//! `v1alpha` that many clients still speak (Python's `grpcio-reflection`,
//! older `grpcurl`). A file is answered together with every file it
//! imports, transitively, as the reflection protocol asks, so a client can
//! build the descriptors it needs from one answer.
//!
//! The descriptors are the coordinator's own API, gRPC health and
//! reflection itself: no data.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tonic_reflection::pb::{v1, v1alpha};

/// The descriptors served.
#[derive(Debug, Default)]
pub struct Descriptors {
    /// File name → (encoded `FileDescriptorProto`, names it imports).
    files: HashMap<String, (Vec<u8>, Vec<String>)>,
    /// Fully qualified symbol → the file that declares it.
    symbols: HashMap<String, String>,
    /// Fully qualified service names.
    services: BTreeSet<String>,
}

/// What a request asked, whatever the protocol version.
enum Ask {
    File(String),
    Symbol(String),
    Extension(String, i32),
    ExtensionNumbers(String),
    ListServices,
    Nothing,
}

/// What to answer, whatever the protocol version.
enum Answer {
    Files(Vec<Vec<u8>>),
    ExtensionNumbers(String),
    Services(Vec<String>),
    Error(tonic::Code, String),
}

fn qualify(prefix: &str, name: Option<&String>) -> String {
    let name = name.map(String::as_str).unwrap_or_default();
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

impl Descriptors {
    /// Indexes encoded `FileDescriptorSet`s.
    pub fn new(sets: &[&[u8]]) -> Result<Descriptors, prost::DecodeError> {
        let mut d = Descriptors::default();
        for set in sets {
            for f in FileDescriptorSet::decode(*set)?.file {
                d.add(f);
            }
        }
        Ok(d)
    }

    fn add(&mut self, f: FileDescriptorProto) {
        let name = f.name.clone().unwrap_or_default();
        if self.files.contains_key(&name) {
            return;
        }
        let package = f.package.clone().unwrap_or_default();
        let mut symbols = Vec::new();
        fn message(prefix: &str, m: &DescriptorProto, out: &mut Vec<String>) {
            let full = qualify(prefix, m.name.as_ref());
            for n in &m.nested_type {
                message(&full, n, out);
            }
            for e in &m.enum_type {
                out.push(qualify(&full, e.name.as_ref()));
            }
            out.push(full);
        }
        for m in &f.message_type {
            message(&package, m, &mut symbols);
        }
        for e in &f.enum_type {
            symbols.push(qualify(&package, e.name.as_ref()));
        }
        for s in &f.service {
            let full = qualify(&package, s.name.as_ref());
            for m in &s.method {
                symbols.push(qualify(&full, m.name.as_ref()));
            }
            self.services.insert(full.clone());
            symbols.push(full);
        }
        for s in symbols {
            self.symbols.insert(s, name.clone());
        }
        let deps = f.dependency.clone();
        self.files.insert(name, (f.encode_to_vec(), deps));
    }

    /// A file and everything it imports, transitively, the file first.
    fn with_imports(&self, name: &str) -> Answer {
        if !self.files.contains_key(name) {
            return Answer::Error(tonic::Code::NotFound, format!("file {name:?} not found"));
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([name.to_string()]);
        while let Some(n) = queue.pop_front() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some((bytes, deps)) = self.files.get(&n) {
                out.push(bytes.clone());
                queue.extend(deps.iter().cloned());
            }
        }
        Answer::Files(out)
    }

    fn answer(&self, ask: Ask) -> Answer {
        match ask {
            Ask::File(name) => self.with_imports(&name),
            Ask::Symbol(s) => match self.symbols.get(s.trim_start_matches('.')) {
                Some(file) => self.with_imports(file),
                None => Answer::Error(tonic::Code::NotFound, format!("symbol {s:?} not found")),
            },
            Ask::Extension(t, n) => {
                Answer::Error(tonic::Code::NotFound, format!("no extension {n} of {t:?}: this API defines none"))
            }
            Ask::ExtensionNumbers(t) => Answer::ExtensionNumbers(t),
            Ask::ListServices => Answer::Services(self.services.iter().cloned().collect()),
            Ask::Nothing => Answer::Error(tonic::Code::InvalidArgument, "empty reflection request".into()),
        }
    }
}

/// The reflection services over one set of descriptors.
#[derive(Debug, Clone)]
pub struct Reflection(pub Arc<Descriptors>);

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One protocol version: the same request and response shapes under
/// another package name, so one macro writes both.
macro_rules! reflection_version {
    ($v:ident) => {
        #[tonic::async_trait]
        impl $v::server_reflection_server::ServerReflection for Reflection {
            type ServerReflectionInfoStream = Responses<$v::ServerReflectionResponse>;

            async fn server_reflection_info(
                &self,
                req: Request<Streaming<$v::ServerReflectionRequest>>,
            ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
                use $v::server_reflection_request::MessageRequest as Q;
                use $v::server_reflection_response::MessageResponse as A;
                let d = self.0.clone();
                let out = req.into_inner().map(move |r| {
                    let r = r?;
                    let ask = match r.message_request.clone() {
                        Some(Q::FileByFilename(f)) => Ask::File(f),
                        Some(Q::FileContainingSymbol(s)) => Ask::Symbol(s),
                        Some(Q::FileContainingExtension(e)) => Ask::Extension(e.containing_type, e.extension_number),
                        Some(Q::AllExtensionNumbersOfType(t)) => Ask::ExtensionNumbers(t),
                        Some(Q::ListServices(_)) => Ask::ListServices,
                        None => Ask::Nothing,
                    };
                    let message_response = match d.answer(ask) {
                        Answer::Files(f) => {
                            A::FileDescriptorResponse($v::FileDescriptorResponse { file_descriptor_proto: f })
                        }
                        Answer::ExtensionNumbers(t) => A::AllExtensionNumbersResponse($v::ExtensionNumberResponse {
                            base_type_name: t,
                            extension_number: Vec::new(),
                        }),
                        Answer::Services(s) => A::ListServicesResponse($v::ListServiceResponse {
                            service: s.into_iter().map(|name| $v::ServiceResponse { name }).collect(),
                        }),
                        Answer::Error(code, error_message) => {
                            A::ErrorResponse($v::ErrorResponse { error_code: code as i32, error_message })
                        }
                    };
                    Ok($v::ServerReflectionResponse {
                        valid_host: r.host.clone(),
                        original_request: Some(r),
                        message_response: Some(message_response),
                    })
                });
                Ok(Response::new(Box::pin(out)))
            }
        }
    };
}

reflection_version!(v1);
reflection_version!(v1alpha);

/// Both reflection services over the coordinator's descriptors.
pub fn services(
    sets: &[&[u8]],
) -> Result<
    (
        v1::server_reflection_server::ServerReflectionServer<Reflection>,
        v1alpha::server_reflection_server::ServerReflectionServer<Reflection>,
    ),
    prost::DecodeError,
> {
    let mut all = sets.to_vec();
    all.push(v1::FILE_DESCRIPTOR_SET);
    all.push(v1alpha::FILE_DESCRIPTOR_SET);
    let r = Reflection(Arc::new(Descriptors::new(&all)?));
    Ok((
        v1::server_reflection_server::ServerReflectionServer::new(r.clone()),
        v1alpha::server_reflection_server::ServerReflectionServer::new(r),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: Answer) -> Vec<String> {
        match a {
            Answer::Files(f) => {
                f.iter().map(|b| FileDescriptorProto::decode(b.as_slice()).unwrap().name().to_string()).collect()
            }
            _ => panic!("not files"),
        }
    }

    #[test]
    fn a_file_comes_with_its_imports_and_symbols_find_their_file() {
        let d = Descriptors::new(&[vigil_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET]).unwrap();
        let files = names(d.answer(Ask::Symbol("vigil.v1.RosterService".into())));
        assert_eq!(files[0], "vigil/v1/services.proto");
        assert!(files.contains(&"vigil/v1/tokens.proto".to_string()), "{files:?}");
        assert_eq!(names(d.answer(Ask::Symbol("vigil.v1.RosterService.Sync".into())))[0], "vigil/v1/services.proto");
        assert_eq!(names(d.answer(Ask::File("vigil/v1/tokens.proto".into()))), vec!["vigil/v1/tokens.proto"]);
        assert!(matches!(d.answer(Ask::Symbol("vigil.v1.Nope".into())), Answer::Error(tonic::Code::NotFound, _)));
        let Answer::Services(s) = d.answer(Ask::ListServices) else { panic!() };
        assert!(s.contains(&"vigil.v1.FeedService".to_string()) && s.contains(&"grpc.health.v1.Health".to_string()));
    }
}
