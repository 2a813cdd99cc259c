module relsec.test/pagerdutyverifier

go 1.21

require github.com/PagerDuty/go-pagerduty v1.8.0
