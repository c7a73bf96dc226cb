//! Tagging operations on data store and image set ARNs: TagResource, UntagResource and
//! ListTagsForResource.

use lightbox_domain::{ResourceArn, ResourceRef};
use lightbox_storage::TagOutcome;

use crate::{Service, ServiceError};

impl Service {
    /// Resolves an ARN to a resource of this deployment; ARNs of other regions, accounts or
    /// partitions name nothing here.
    fn resource(&self, arn: &str) -> Result<ResourceRef, ServiceError> {
        let parsed = ResourceArn::parse(arn).ok_or_else(|| {
            ServiceError::Validation(
                "1 validation error detected: Value at 'resourceArn' failed to satisfy constraint: \
                 Member must be a medical-imaging data store or image set ARN"
                    .into(),
            )
        })?;
        if parsed.partition != "aws"
            || parsed.region != self.config.region
            || parsed.account_id != self.config.account_id
        {
            return Err(not_found(arn));
        }
        Ok(parsed.resource)
    }

    pub async fn tag_resource(
        &self,
        arn: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), ServiceError> {
        let resource = self.resource(arn)?;
        let max = self.config.max_tags_per_resource;
        match self.catalog.tag_resource(&resource, &tags, max).await? {
            TagOutcome::Done => Ok(()),
            TagOutcome::NotFound => Err(not_found(arn)),
            TagOutcome::TooManyTags => Err(ServiceError::Validation(format!(
                "1 validation error detected: Value at 'tags' failed to satisfy constraint: \
                 a resource can have at most {max} tags"
            ))),
        }
    }

    pub async fn untag_resource(&self, arn: &str, keys: Vec<String>) -> Result<(), ServiceError> {
        let resource = self.resource(arn)?;
        match self.catalog.untag_resource(&resource, &keys).await? {
            TagOutcome::Done => Ok(()),
            _ => Err(not_found(arn)),
        }
    }

    pub async fn list_tags_for_resource(
        &self,
        arn: &str,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let resource = self.resource(arn)?;
        self.catalog
            .list_tags(&resource)
            .await?
            .ok_or_else(|| not_found(arn))
    }
}

fn not_found(arn: &str) -> ServiceError {
    ServiceError::NotFound(format!("Resource {arn} does not exist"))
}
