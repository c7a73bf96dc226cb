//! Amazon Resource Names of data stores and image sets.
//!
//! `arn:aws:medical-imaging:{region}:{account}:datastore/{datastoreId}[/imageset/{imageSetId}]`
//! (lower-case `imageset` in ARNs, while URIs use `imageSet`).

use crate::{DatastoreId, ImageSetId};

/// The resource an ARN names, without the partition/region/account envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceRef {
    Datastore(DatastoreId),
    ImageSet(DatastoreId, ImageSetId),
}

impl ResourceRef {
    pub fn datastore_id(&self) -> &DatastoreId {
        match self {
            Self::Datastore(d) | Self::ImageSet(d, _) => d,
        }
    }

    /// The resource part of the ARN (`datastore/…[/imageset/…]`), also the catalog's tag key.
    pub fn path(&self) -> String {
        match self {
            Self::Datastore(d) => format!("datastore/{d}"),
            Self::ImageSet(d, i) => format!("datastore/{d}/imageset/{i}"),
        }
    }
}

/// A parsed medical-imaging ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceArn {
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub resource: ResourceRef,
}

impl ResourceArn {
    pub fn new(region: &str, account_id: &str, resource: ResourceRef) -> Self {
        Self {
            partition: "aws".into(),
            region: region.into(),
            account_id: account_id.into(),
            resource,
        }
    }

    /// Parses an ARN; `None` if it is not a medical-imaging data store or image set ARN.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if arn != "arn" || service != "medical-imaging" || !partition.starts_with("aws") {
            return None;
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let segs: Vec<&str> = resource.split('/').collect();
        let resource = match segs.as_slice() {
            ["datastore", d] => ResourceRef::Datastore(DatastoreId::parse(d).ok()?),
            ["datastore", d, "imageset", i] => {
                ResourceRef::ImageSet(DatastoreId::parse(d).ok()?, ImageSetId::parse(i).ok()?)
            }
            _ => return None,
        };
        Some(Self {
            partition: partition.into(),
            region: region.into(),
            account_id: account.into(),
            resource,
        })
    }
}

impl std::fmt::Display for ResourceArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "arn:{}:medical-imaging:{}:{}:{}",
            self.partition,
            self.region,
            self.account_id,
            self.resource.path()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_kinds() {
        let d = "0123456789abcdef0123456789abcdef";
        let i = "fedcba9876543210fedcba9876543210";
        let s =
            format!("arn:aws:medical-imaging:us-east-1:000000000000:datastore/{d}/imageset/{i}");
        let arn = ResourceArn::parse(&s).unwrap();
        assert_eq!(arn.to_string(), s);
        assert!(matches!(arn.resource, ResourceRef::ImageSet(..)));
        let s = format!("arn:aws:medical-imaging:eu-west-1:123456789012:datastore/{d}");
        assert_eq!(ResourceArn::parse(&s).unwrap().to_string(), s);
    }

    #[test]
    fn rejects_other_services_and_shapes() {
        let d = "0123456789abcdef0123456789abcdef";
        for bad in [
            format!("arn:aws:s3:us-east-1:000000000000:datastore/{d}"),
            format!("arn:aws:medical-imaging:us-east-1:0000:datastore/{d}"),
            format!("arn:aws:medical-imaging:us-east-1:000000000000:datastore/{d}/imageSet/{d}"),
            "arn:aws:medical-imaging:us-east-1:000000000000:datastore/x".to_string(),
            "nonsense".to_string(),
        ] {
            assert!(ResourceArn::parse(&bad).is_none(), "{bad}");
        }
    }
}
