// Errors the API reports to its client, each with its HTTP status.
import { CrvmError } from "../errors.ts";

/**
 * @example
 * throw new ApiError(404, `no container "web"`);
 */
export class ApiError extends CrvmError {
  override name = "ApiError";
  constructor(readonly status: 400 | 401 | 404 | 409 | 413 | 422 | 502, message: string) {
    super(message);
  }
}
