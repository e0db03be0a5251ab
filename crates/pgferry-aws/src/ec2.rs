//! A client for the few EC2 calls pgferry makes (the fence's security group),
//! signed by hand.
//!
//! Why not the EC2 SDK crate: `aws-sdk-ec2` is the largest crate of the AWS SDK
//! for Rust (several hundred operations of generated code, several times those
//! of the RDS crate that already dominates pgferry's build), for four actions:
//! `DescribeSecurityGroups`, `CreateSecurityGroup`, `AuthorizeSecurityGroupIngress`
//! and `DeleteSecurityGroup`. They are EC2 Query API requests (a form-encoded
//! POST, an XML answer), so pgferry sends them itself with pieces the SDK
//! already builds, with the features it already enables (the dependency graph
//! is unchanged): SigV4 signatures by `aws-sigv4` (the SDK's own signer), the
//! SDK's default HTTPS connector (`aws-smithy-http-client`), the form encoding
//! of `aws-smithy-query`, and a small reader for the answers ([`crate::xml`]).
//! Credentials, region and endpoint come from the same [`SdkConfig`] as the SDK
//! clients, so
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_EC2`) points EC2 elsewhere as it
//! does the others, which is how the tests reach moto. As for the SDK clients,
//! the only retry is pgferry's ([`crate::retry`]).

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_types::service_config::ServiceConfigKey;

use crate::control::{CloudError, CloudResult};
use crate::xml::{self, Node};

/// The EC2 API version the calls are written against.
const VERSION: &str = "2016-11-15";

/// How long one call may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Signed EC2 Query API calls.
pub struct Ec2 {
    http: Option<SharedHttpConnector>,
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl Ec2 {
    pub fn from_config(config: &SdkConfig) -> Ec2 {
        let key = ServiceConfigKey::builder().service_id("EC2").env("AWS_ENDPOINT_URL").profile("endpoint_url").build();
        let configured = key.ok().and_then(|key| config.service_config()?.load_config(key));
        Ec2 {
            http: aws_smithy_http_client::default_connector(&HttpConnectorSettings::default(), None),
            credentials: config.credentials_provider(),
            region: config.region().map(|r| r.as_ref().to_owned()),
            endpoint: configured.or_else(|| config.endpoint_url().map(str::to_owned)),
        }
    }

    /// EC2's regional endpoint, unless the configuration names another.
    fn endpoint(&self, action: &'static str) -> CloudResult<String> {
        match (&self.endpoint, &self.region) {
            (Some(url), _) => Ok(url.trim_end_matches('/').to_owned()),
            (None, Some(region)) => Ok(format!("https://ec2.{region}.amazonaws.com")),
            (None, None) => Err(CloudError::new(action, None, "no AWS region is configured (set AWS_REGION)")),
        }
    }

    /// Calls `action` (`ec2:<Action>`) with these parameters; the answer's root element.
    pub(crate) async fn call(&self, action: &'static str, params: &[(String, String)]) -> CloudResult<Node> {
        let request = self.signed(action, params).await?;
        let http = self.http.as_ref().ok_or_else(|| CloudError::new(action, None, "no HTTPS client is built in"))?;
        let answer = match tokio::time::timeout(TIMEOUT, http.call(request)).await {
            Err(_) => return Err(CloudError::new(action, None, format!("no answer within {TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(CloudError::new(action, None, e.to_string())),
            Ok(Ok(answer)) => answer,
        };
        let status = answer.status();
        let body = ByteStream::new(answer.into_body())
            .collect()
            .await
            .map_err(|e| CloudError::new(action, None, format!("reading the answer: {e}")))?
            .into_bytes();
        let text = String::from_utf8_lossy(&body);
        let root = xml::parse(&text);
        if status.is_success() {
            return root.map_err(|e| CloudError::new(action, None, format!("an unreadable answer ({e}): {text}")));
        }
        let code = root.as_ref().ok().and_then(|r| r.find("Code")).map(|c| c.text.clone());
        let message = root.as_ref().ok().and_then(|r| r.find("Message")).map(|m| m.text.clone());
        Err(CloudError {
            action,
            code: Some(code.unwrap_or_else(|| format!("HTTP {}", status.as_u16()))),
            message: message.unwrap_or_else(|| text.into_owned()),
        })
    }

    /// The POST of `action`, signed with the configuration's credentials.
    async fn signed(&self, action: &'static str, params: &[(String, String)]) -> CloudResult<HttpRequest> {
        let endpoint = self.endpoint(action)?;
        let region = self.region.as_deref().unwrap_or("us-east-1");
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| CloudError::new(action, None, "no AWS credentials are configured"))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| CloudError::new(action, None, format!("no AWS credentials: {e}")))?;
        let identity = Identity::from(credentials);
        let body = form(action, params);
        let host = endpoint.split("://").nth(1).unwrap_or(&endpoint).split('/').next().unwrap_or_default().to_owned();
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8"), ("host", host.as_str())];
        let invalid = |e: &dyn std::fmt::Display| CloudError::new(action, None, format!("signing the request: {e}"));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| invalid(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            format!("{endpoint}/"),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| invalid(&e))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| invalid(&e))?.into_parts();
        let mut request = HttpRequest::new(SdkBody::from(body));
        request.set_uri(format!("{endpoint}/")).map_err(|e| invalid(&e))?;
        request.set_method("POST").map_err(|e| invalid(&e))?;
        for (name, value) in headers.into_iter().chain(instructions.headers()) {
            request.headers_mut().insert(name.to_owned(), value.to_owned());
        }
        Ok(request)
    }
}

/// The form-encoded body: `Action`, `Version`, then the parameters.
fn form(action: &'static str, params: &[(String, String)]) -> String {
    let mut body = String::new();
    let mut writer = aws_smithy_query::QueryWriter::new(&mut body, action.trim_start_matches("ec2:"), VERSION);
    for (name, value) in params {
        writer.prefix(name).string(value);
    }
    writer.finish();
    body
}

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;
    use aws_types::region::Region;

    use super::*;

    fn client(session_token: Option<&str>, endpoint: Option<&str>) -> Ec2 {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", session_token.map(str::to_owned), None, "test");
        let mut config = SdkConfig::builder()
            .region(Region::new("eu-west-3"))
            .credentials_provider(SharedCredentialsProvider::new(credentials));
        config.set_endpoint_url(endpoint.map(str::to_owned));
        Ec2::from_config(&config.build())
    }

    #[test]
    fn the_body_is_form_encoded() {
        let params =
            [("GroupName".to_owned(), "pgferry-main-fence".to_owned()), ("Tag.1.Value".into(), "a b&c".into())];
        assert_eq!(
            form("ec2:CreateSecurityGroup", &params),
            "Action=CreateSecurityGroup&Version=2016-11-15&GroupName=pgferry-main-fence&Tag.1.Value=a%20b%26c"
        );
    }

    #[tokio::test]
    async fn requests_are_signed_for_ec2_in_the_configured_region() {
        let ec2 = client(Some("session"), None);
        let request = ec2.signed("ec2:DescribeSecurityGroups", &[]).await.unwrap();
        assert_eq!(request.uri(), "https://ec2.eu-west-3.amazonaws.com/");
        assert_eq!(request.method(), "POST");
        let headers = request.headers();
        let authorization = headers.get("authorization").unwrap();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{authorization}");
        assert!(authorization.contains("/eu-west-3/ec2/aws4_request"), "{authorization}");
        assert!(authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
        assert_eq!(headers.get("x-amz-security-token"), Some("session"));
        assert_eq!(headers.get("host"), Some("ec2.eu-west-3.amazonaws.com"));
    }

    #[tokio::test]
    async fn the_endpoint_override_applies() {
        let ec2 = client(None, Some("http://127.0.0.1:5000/"));
        let request = ec2.signed("ec2:DescribeSecurityGroups", &[]).await.unwrap();
        assert_eq!(request.uri(), "http://127.0.0.1:5000/");
        assert_eq!(request.headers().get("host"), Some("127.0.0.1:5000"));
        assert!(request.headers().get("x-amz-security-token").is_none());
    }
}
