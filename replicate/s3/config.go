package s3

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultRegion is used when a custom endpoint is given without a region.
const DefaultRegion = "us-east-1"

// Config says where a Client stores files and how it reaches the store.
// Credentials are not part of it: they come from the standard AWS chain
// (environment, shared config and credentials files, instance roles),
// unless Credentials is set.
type Config struct {
	Bucket         string // required; at least 3 characters
	Path           string // key prefix of the database, without leading or trailing slash
	Region         string // empty: DefaultRegion with an Endpoint, else the AWS chain's or the bucket's
	Endpoint       string // e.g. http://127.0.0.1:9000; empty means AWS
	ForcePathStyle bool   // address the bucket in the path, not the host name
	SkipVerify     bool   // accept any TLS certificate

	// Credentials, if set, replaces the AWS credential chain (tests).
	Credentials aws.CredentialsProvider

	// RequestTimeout bounds each request that carries no file body
	// (listing, deleting). Zero means 30s.
	RequestTimeout time.Duration

	// IdleTimeout bounds how long a transfer of a file's body may make no
	// progress before it is cancelled. Zero means 30s.
	IdleTimeout time.Duration

	// MaxAttempts is how many times a failed request is tried, with
	// exponential backoff up to MaxBackoff. Zero means 5 and 2s.
	MaxAttempts int
	MaxBackoff  time.Duration

	// HTTPTransport, if set, adjusts the HTTP transport (tests).
	HTTPTransport func(*http.Transport)
}

func (cfg *Config) setDefaults() error {
	if len(cfg.Bucket) < 3 {
		return fmt.Errorf("s3: bucket name %q: need at least 3 characters", cfg.Bucket)
	}
	cfg.Path = strings.Trim(cfg.Path, "/")
	if cfg.Endpoint != "" {
		cfg.Endpoint = EnsureScheme(cfg.Endpoint)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	return nil
}

// EnsureScheme adds http:// to a local endpoint (localhost, a loopback or
// private IP address) and https:// to any other that has no scheme, as
// Litestream does.
func EnsureScheme(endpoint string) string {
	if strings.HasPrefix(endpoint, "http://") || strings.HasPrefix(endpoint, "https://") {
		return endpoint
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return "http://" + endpoint
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified()) {
		return "http://" + endpoint
	}
	return "https://" + endpoint
}

// newAPI builds the SDK client. It may look up the bucket's region, which
// takes a request.
func newAPI(ctx context.Context, cfg Config) (*s3.Client, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 16
		tr.IdleConnTimeout = 90 * time.Second
		if cfg.SkipVerify {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true
		}
		if cfg.HTTPTransport != nil {
			cfg.HTTPTransport(tr)
		}
	})
	opts := []func(*config.LoadOptions) error{
		// A BuildableClient lets the SDK add AWS_CA_BUNDLE's roots.
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = cfg.MaxBackoff
				o.RateLimiter = ratelimit.None // never fail fast on a spent retry quota
				o.Retryables = append(o.Retryables, retry.RetryableHTTPStatusCode{Codes: map[int]struct{}{
					http.StatusRequestTimeout: {}, http.StatusTooManyRequests: {},
				}})
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	lctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(lctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
		if cfg.Endpoint == "" {
			if awsCfg.Region, err = bucketRegion(ctx, awsCfg, cfg); err != nil {
				return nil, err
			}
		}
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.ForcePathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			// S3-compatible stores (MinIO among them) may not accept the
			// SDK's default aws-chunked checksums.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	}), nil
}

// bucketRegion asks AWS where the bucket lives.
func bucketRegion(ctx context.Context, awsCfg aws.Config, cfg Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	out, err := s3.NewFromConfig(awsCfg).GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(cfg.Bucket)})
	if err != nil {
		return "", fmt.Errorf("s3: find the region of bucket %s (set region= in the URL to skip this): %w", cfg.Bucket, err)
	}
	if out.LocationConstraint == "" {
		return DefaultRegion, nil
	}
	return string(out.LocationConstraint), nil
}
