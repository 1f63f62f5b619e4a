import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

export const HealthClient = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');

export interface HealthResponse {
  status: string;
}

/** grpc.health.v1 Check, as a load balancer or a Kubernetes probe calls it (no credentials). */
export function healthCheck(address: string, service = ''): Promise<HealthResponse> {
  const client = new HealthClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: HealthResponse) => void): void;
  };
  return new Promise((resolve, reject) =>
    client.check({ service }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response);
    }),
  );
}
